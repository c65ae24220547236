#!/usr/bin/env node
'use strict'
/**
 * Example subscriber: prints one canonical JSON line per delivered message and, on SIGTERM,
 * SIGINT or after --count messages, the final books and the counters.
 *
 *   node examples/subscribe.js --pub ipc:///run/ff/binance.pub --snapshot ipc:///run/ff/binance.snap \
 *        --prefix book.BINANCE. --prefix trades.BINANCE.
 * (repeat --pub/--snapshot for more gateways; the n-th --snapshot belongs to the n-th --pub;
 *  --snapshot - for a gateway without snapshot service)
 */

const { Subscriber, messageLine, bookLine, toCanonicalJSON } = require('../lib')

function parseArgs (argv) {
  const a = { pubs: [], snaps: [], prefixes: [], heartbeatTimeout: 3.0, count: 0 }
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]
    const v = argv[++i]
    if (v === undefined) throw new Error(`${k} needs a value`)
    if (k === '--pub') a.pubs.push(v)
    else if (k === '--snapshot') a.snaps.push(v === '-' ? null : v)
    else if (k === '--prefix') a.prefixes.push(v)
    else if (k === '--heartbeat-timeout') a.heartbeatTimeout = Number(v)
    else if (k === '--count') a.count = Number(v)
    else throw new Error(`unknown option ${k}`)
  }
  if (a.pubs.length === 0) throw new Error('usage: subscribe.js --pub ENDPOINT [--snapshot ENDPOINT] [--prefix P]... [--count N]')
  if (a.prefixes.length === 0) a.prefixes.push('')
  return a
}

async function main () {
  const args = parseArgs(process.argv.slice(2))
  const endpoints = args.pubs.map((pub, i) => ({ pub, snapshot: args.snaps[i] || null }))
  const sub = new Subscriber(endpoints, args.prefixes, { heartbeatTimeout: args.heartbeatTimeout })
  const out = (line) => process.stdout.write(line + '\n')
  // A reader that went away (| head) ends the program quietly.
  process.stdout.on('error', (err) => { if (err.code === 'EPIPE') process.exit(0); throw err })
  let finished = false
  const finish = () => {
    if (finished) return
    finished = true
    for (const [gw, topic, book] of sub.books.all()) out(bookLine(gw, topic, book))
    out(toCanonicalJSON({ type: 'end', counters: sub.counters }))
    sub.close()
  }
  process.on('SIGTERM', finish)
  process.on('SIGINT', finish)
  out(toCanonicalJSON({ type: 'ready' }))
  let n = 0
  for await (const msg of sub) {
    out(messageLine(msg))
    if (args.count > 0 && ++n >= args.count) break
  }
  finish()
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`)
  process.exit(1)
})
