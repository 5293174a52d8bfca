// Stand-in for nhost/functions' server.ts: GET /healthz answers "ok"; every .js file in
// the functions folder (not in node_modules, not starting with _, not in a folder
// starting with _) is an endpoint at its path without the extension (index -> /), its
// default export (module.exports) the handler; port 3000. The stand-in gives handlers a
// small request/response, not Express's; it cannot load TypeScript (the real image runs
// tsx) and says so.
'use strict'
const fs = require('fs')
const http = require('http')
const path = require('path')

const root = path.join(process.cwd(), process.env.FUNCTIONS_RELATIVE_PATH || '.')
const routes = new Map()

function walk (folder, prefix) {
  for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('_')) continue
    const full = path.join(folder, entry.name)
    const relative = path.posix.join(prefix, entry.name)
    if (entry.isDirectory()) walk(full, relative)
    else if (/\.ts$/.test(entry.name)) console.warn(`stand-in: cannot load TypeScript ${relative}`)
    else if (/\.js$/.test(entry.name)) {
      const handler = require(full)
      const route = ('/' + relative).replace(/\.js$/, '').replace(/\/index$/, '/')
      if (typeof handler === 'function') {
        routes.set(route, handler)
        console.log(`Loaded route ${route} from ${relative}`)
      } else console.warn(`No default export at ${relative}`)
    }
  }
}
walk(root, '')

http.createServer((req, res) => {
  const url = new URL(req.url, 'http://functions')
  if (url.pathname === '/healthz') { res.end('ok'); return }
  const handler = routes.get(url.pathname)
  if (!handler) { res.statusCode = 404; res.end(`Cannot ${req.method} ${url.pathname}`); return }
  const chunks = []
  req.on('data', c => chunks.push(c))
  req.on('end', () => {
    const text = Buffer.concat(chunks).toString()
    req.query = Object.fromEntries(url.searchParams)
    req.path = url.pathname
    try { req.body = /json/.test(req.headers['content-type'] || '') ? JSON.parse(text) : text } catch { req.body = text }
    res.status = code => { res.statusCode = code; return res }
    res.send = body => {
      if (typeof body === 'object') { res.setHeader('Content-Type', 'application/json'); body = JSON.stringify(body) }
      res.end(String(body))
      return res
    }
    res.json = body => res.send(body === null ? 'null' : body)
    Promise.resolve().then(() => handler(req, res)).catch(err => {
      console.error(err); res.statusCode = 500; res.end('Internal Server Error')
    })
  })
}).listen(3000, () => console.log('Listening on port 3000'))
