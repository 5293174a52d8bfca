"""nself's builtin capabilities, one plugin package each, registered through entry points."""
