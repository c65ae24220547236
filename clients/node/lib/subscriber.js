'use strict'
/**
 * The ZeroMQ driver around SubscriberCore: one SUB socket connected to every gateway's PUB
 * endpoint, one DEALER per snapshot endpoint, and a timer for request retries and
 * stale-gateway detection.
 *
 *   const sub = new Subscriber([{ pub: 'ipc:///run/ff/binance.pub', snapshot: 'ipc:///run/ff/binance.snap' }],
 *                              ['book.BINANCE.', 'trades.BINANCE.'])
 *   for await (const msg of sub) console.log(msg.topic, msg.event)
 *   sub.book('BINANCE', 'BTC-USDT')  // the book as of the last message handed out; null while resyncing
 */

const zmq = require('zeromq')
const { SubscriberCore, BookKeeper, gapPrefixes, HEARTBEAT_PREFIX } = require('./core')

const monotonic = () => Number(process.hrtime.bigint()) / 1e9

function asEndpoint (e) {
  if (typeof e === 'string') return { pub: e, snapshot: null }
  if (e && typeof e.pub === 'string') return { pub: e.pub, snapshot: e.snapshot || null }
  throw new TypeError(`expected an endpoint string or {pub, snapshot}, got ${JSON.stringify(e)}`)
}

class Subscriber {
  /**
   * @param {string|{pub:string,snapshot?:string}|Array} endpoints
   * @param {string[]} prefixes  topic prefixes ('' = everything)
   * @param {{books?:boolean, heartbeatTimeout?:number, requestTimeout?:number, receiveHighWaterMark?:number, log?:Function}} opts
   */
  constructor (endpoints, prefixes = [''], opts = {}) {
    if (typeof prefixes === 'string') prefixes = [prefixes]
    const eps = (Array.isArray(endpoints) ? endpoints : [endpoints]).map(asEndpoint)
    if (eps.length === 0) throw new Error('no endpoint to connect to')
    const books = opts.books !== false
    this._sub = new zmq.Subscriber({ receiveHighWaterMark: opts.receiveHighWaterMark ?? 100000, linger: 0 })
    const wanted = [...new Set(prefixes)]
    this._wanted = wanted
    // Publishers' gaps on the books kept, whether or not the user asked for them (gapPrefixes).
    for (const p of [...wanted, HEARTBEAT_PREFIX, ...(books ? gapPrefixes(wanted) : [])]) this._sub.subscribe(p)
    for (const ep of eps) this._sub.connect(ep.pub)
    this._dealers = []
    const snapIdx = []
    for (const ep of eps) {
      if (ep.snapshot && books) {
        // Replies are bounded by our own requests: never drop half of one.
        const d = new zmq.Dealer({ linger: 0, receiveHighWaterMark: 0 })
        d.connect(ep.snapshot)
        snapIdx.push(this._dealers.length)
        this._dealers.push({ sock: d, sending: Promise.resolve() })
      }
    }
    this.core = new SubscriberCore(wanted, snapIdx, {
      books,
      heartbeatTimeout: opts.heartbeatTimeout ?? 3.0,
      requestTimeout: opts.requestTimeout ?? 2.0,
      log: opts.log || ((m) => process.stderr.write(`feedfabric: ${m}\n`))
    })
    this.counters = this.core.counters
    // Books follow what the user has been handed (not what is decoded ahead of it).
    this.books = books ? new BookKeeper() : null
    this._queue = []
    this._waiters = []
    this._timer = null
    this._closed = false
    this.core.start(monotonic())
    this._flush()
    this._pumpSub()
    this._dealers.forEach((d, i) => this._pumpDealer(d.sock, i))
    this._schedule()
  }

  _deliver (msgs) {
    for (const m of msgs) this._queue.push(m)
    while (this._waiters.length > 0) {
      const m = this._next()
      if (m === null) break
      this._waiters.shift().resolve(m)
    }
    this._flush()
    this._schedule()
  }

  // The next message for the user (books follow it), or null; a publisher's gap received only for
  // the books (gapPrefixes) is applied to them and not handed out.
  _next () {
    while (this._queue.length > 0) {
      const m = this._queue.shift()
      if (this.books !== null) {
        this.books.onDelivered(m)
        if (m.event.kind === 'gap' && m.header.seq !== 0n && !this._wanted.some((p) => m.topic.startsWith(p))) continue
      }
      this.counters.delivered++
      return m
    }
    return null
  }

  _flush () {
    const outbox = this.core.outbox
    while (outbox.length > 0) {
      const [i, frames] = outbox.shift()
      const d = this._dealers[i]
      // zeromq.js allows one send in flight per socket: chain them. A failed send is
      // retried by the request's own timeout.
      d.sending = d.sending.then(() => d.sock.send(frames)).catch(() => {})
    }
  }

  _schedule () {
    if (this._closed) return
    if (this._timer !== null) clearTimeout(this._timer)
    const t = this.core.nextDeadline()
    if (t === null) { this._timer = null; return }
    const ms = Math.max(0, (t - monotonic()) * 1000) + 1
    this._timer = setTimeout(() => {
      this._timer = null
      if (!this._closed) this._deliver(this.core.tick(monotonic()))
    }, ms)
  }

  async _pumpSub () {
    try {
      for await (const frames of this._sub) this._deliver(this.core.onSub(frames, monotonic()))
    } catch (err) {
      if (!this._closed) this._fatal(err)
    }
  }

  async _pumpDealer (sock, i) {
    try {
      for await (const frames of sock) this._deliver(this.core.onSnapshot(i, frames, monotonic()))
    } catch (err) {
      if (!this._closed) this._fatal(err)
    }
  }

  // A socket failed (not a bad message: those are counted by the core). Nothing more
  // can arrive, so say why and end the stream rather than hang.
  _fatal (err) {
    if (this.core.log) this.core.log(`socket failed, closing the subscriber: ${err.message}`)
    this.error = err
    this.close()
  }

  /** The next message, or null after `timeout` seconds (undefined: wait forever). */
  recv (timeout) {
    const m = this._next()
    if (m !== null) return Promise.resolve(m)
    if (this._closed) return Promise.resolve(null)
    return new Promise((resolve) => {
      const w = { resolve }
      this._waiters.push(w)
      if (timeout !== undefined && timeout !== null) {
        setTimeout(() => {
          const i = this._waiters.indexOf(w)
          if (i >= 0) { this._waiters.splice(i, 1); resolve(null) }
        }, timeout * 1000)
      }
    })
  }

  async * [Symbol.asyncIterator] () {
    while (!this._closed) {
      const m = await this.recv()
      if (m !== null) yield m
    }
  }

  /** The validated L2 book of exchange/symbol (null while unknown or being resynced). */
  book (exchange, symbol) {
    return this.books === null ? null : this.books.book(exchange, symbol)
  }

  close () {
    if (this._closed) return
    this._closed = true
    if (this._timer !== null) clearTimeout(this._timer)
    for (const w of this._waiters.splice(0)) w.resolve(null)
    this._sub.close()
    for (const d of this._dealers) d.sock.close()
  }
}

module.exports = { Subscriber }
