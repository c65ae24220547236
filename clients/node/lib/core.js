'use strict'
/**
 * The sans-I/O subscriber state machine: frames in, messages to deliver and snapshot
 * requests out; no sockets and no clock of its own (`now` is monotonic seconds).
 * It follows the rules of docs/wire.md ("Snapshot service, heartbeats and recovery")
 * exactly as the Python reference (bus/subscriber.py SubscriberCore) does, so that the
 * two deliver identical streams:
 *
 * - per (gateway, topic) the sequence grows by exactly 1; a jump is a gap, a smaller or
 *   equal number a duplicate (dropped);
 * - book./l3. topics start from the snapshot service: messages are buffered until the
 *   snapshot arrives, those at or below its sequence dropped, the rest applied. A gap
 *   yields a Gap message, invalidates the book, re-requests its snapshot and then yields
 *   Reset + the fresh book_snapshot. A topic whose first message has sequence 1 needs no
 *   snapshot;
 * - a new epoch of a gateway invalidates all its state; a gateway silent for
 *   heartbeatTimeout yields Status 'stale' (and 'connected' when it speaks again);
 * - a heartbeat's counters.book_seqs reveals books whose last messages were lost, and its
 *   counters.book_invalid a publisher gap that was lost;
 * - malformed frames are counted and skipped.
 * Messages made locally (Gap, Reset, Status) carry sequence number 0.
 */

const { decode, topicOf, topicPart, unpack, WireError } = require('./codec')
const { OrderBook } = require('./book')

const HEARTBEAT_PREFIX = 'heartbeat.'
const STATEFUL = new Set(['book', 'l3'])
// A gap in these is counted only: a Gap with a nil symbol would declare a whole feed invalid.
const CONTROL = new Set(['heartbeat', 'status', 'gap', 'reset'])
const SNAPSHOT = 'SNAPSHOT'
const HELLO = 'HELLO'

/**
 * The prefix of the topics a gap event declares invalid (bus/topics.py gap_scope): its book's
 * topic, or with a null symbol (feed-wide) every topic of that channel and exchange. A complete
 * topic is a prefix of itself only, so one startsWith serves both.
 */
function gapScope (gap) {
  const head = `${gap.channel}.${topicPart(gap.exchange)}.`
  return typeof gap.symbol === 'string' ? `${head}${topicPart(gap.symbol)}.` : head
}

/**
 * The gap. prefixes a client keeping books subscribes beside `prefixes`, asked for or not
 * (docs/wire.md, "The publisher's own gaps"; bus/subscriber.py gap_prefixes): a publisher's gap
 * makes its book invalid until the rebuild, which a client of `book.` alone would not learn.
 * @param {string[]} prefixes
 * @returns {string[]}
 */
function gapPrefixes (prefixes) {
  const out = []
  for (const p of prefixes) {
    if (p.startsWith('book.') || p.startsWith('l3.')) {
      const rest = p.slice(p.indexOf('.') + 1)
      out.push('gap.' + rest)
      const dot = rest.indexOf('.')
      if (dot >= 0 && dot + 1 < rest.length) out.push(`gap.${rest.slice(0, dot)}._.`)
    } else if ('book.'.startsWith(p) || 'l3.'.startsWith(p)) {
      out.push('gap.')
    }
  }
  return [...new Set(out)]
}

class TopicState {
  constructor (topic, stateful, event = null) {
    this.topic = topic
    this.stateful = stateful
    this.seq = 0n
    this.live = false
    this.hadValid = false
    this.buffer = []
    const parts = topic.slice(0, -1).split('.')
    this.channel = parts[0]
    // Names for Gap/Reset events: the event's own (topic keys are escaped), else the topic's.
    const ex = event !== null && typeof event.exchange === 'string' ? event.exchange : ''
    const sym = event !== null && typeof event.symbol === 'string' ? event.symbol : ''
    this.exchange = ex || (parts.length > 1 ? parts[1] : '')
    this.symbol = sym || (parts.length > 2 ? parts[2] : null)
    // Our seq when the publisher's own gap of this book reached us (-1n: none): a heartbeat
    // listing the book invalid at another seq means we lost that gap (_checkTails).
    this.gapSeenAt = -1n
    // The seq of the snapshot reply the book went live from, while it is still our seq (no
    // message of the stream has followed it yet): -1n otherwise (see _publisherGap).
    this.replySeq = -1n
  }
}

class GatewayState {
  constructor (name, epoch, now) {
    this.name = name
    this.epoch = epoch
    this.lastSeen = now
    this.stale = false
    this.states = new Map()
    this.needSnapshot = false
    this.seenOnSub = false
  }
}

function nowNs () {
  return BigInt(Date.now()) * 1000000n
}

class SubscriberCore {
  /**
   * @param {string[]} prefixes  topic prefixes the user subscribed to
   * @param {number[]} snapshotEndpoints  indexes of the snapshot endpoints
   */
  constructor (prefixes, snapshotEndpoints, { books = true, heartbeatTimeout = 3.0, requestTimeout = 2.0, maxBuffer = 100000, log = null } = {}) {
    this.prefixes = [...new Set(prefixes)]
    this.deliverHeartbeats = this.prefixes.some((p) => HEARTBEAT_PREFIX.startsWith(p) || p.startsWith(HEARTBEAT_PREFIX))
    this.books = books
    this.heartbeatTimeout = heartbeatTimeout
    this.requestTimeout = requestTimeout
    this.maxBuffer = maxBuffer
    this.snapshotEndpoints = snapshotEndpoints
    this.log = log
    this.outbox = [] // [endpointIndex, frames]
    this.counters = {
      messages: 0, delivered: 0, junk: 0, unknown_kind: 0, gaps: 0, resyncs: 0, duplicates: 0,
      old_epoch: 0, epochs: 0, buffer_overflows: 0, snapshot_requests: 0, snapshot_timeouts: 0,
      snapshot_junk: 0, stale: 0, control_gaps: 0
    }
    this.gateways = new Map()
    this.endpointOf = new Map()
    this.requests = new Map()
    this.nextRid = 1
  }

  // -- requests -------------------------------------------------------------------------

  start (now) {
    if (this.books) for (const i of this.snapshotEndpoints) this._send(i, null, HELLO, '', now)
  }

  _send (endpoint, gateway, kind, prefix, now) {
    const rid = String(this.nextRid++)
    this.requests.set(rid, { rid, endpoint, gateway, kind, prefix, deadline: now + this.requestTimeout, items: [] })
    this.outbox.push([endpoint, [Buffer.from(kind), Buffer.from(prefix, 'latin1'), Buffer.from(rid)]])
    if (kind === SNAPSHOT) this.counters.snapshot_requests++
  }

  _requestGateway (gw, prefixes, now) {
    const ep = this.endpointOf.get(gw.name)
    if (ep === undefined) {
      gw.needSnapshot = true
      return
    }
    for (const p of prefixes) {
      let covered = false
      for (const r of this.requests.values()) {
        if (r.gateway === gw.name && r.kind === SNAPSHOT && p.startsWith(r.prefix)) { covered = true; break }
      }
      if (!covered) this._send(ep, gw.name, SNAPSHOT, p, now)
    }
  }

  /** Monotonic time at which tick() has something to do, or null. */
  nextDeadline () {
    let t = null
    for (const r of this.requests.values()) if (t === null || r.deadline < t) t = r.deadline
    for (const g of this.gateways.values()) {
      if (!g.stale) {
        const d = g.lastSeen + this.heartbeatTimeout
        if (t === null || d < t) t = d
      }
    }
    return t
  }

  tick (now) {
    const out = []
    for (const [rid, r] of [...this.requests]) {
      if (now >= r.deadline) {
        this.requests.delete(rid)
        this.counters.snapshot_timeouts++
        this._send(r.endpoint, r.gateway, r.kind, r.prefix, now)
      }
    }
    for (const gw of this.gateways.values()) {
      if (!gw.stale && now - gw.lastSeen >= this.heartbeatTimeout) {
        gw.stale = true
        this.counters.stale++
        out.push(this._status(gw, 'stale', `no message for ${this.heartbeatTimeout} s`))
      }
    }
    return out
  }

  // -- locally made messages ------------------------------------------------------------

  _local (gw, event) {
    const t = nowNs()
    const header = { version: 1, gateway: gw.name, epoch: gw.epoch, seq: 0n, timestamp: null, receipt_timestamp: t, publish_timestamp: t }
    return { topic: topicOf(event), header, event, local: true }
  }

  _status (gw, state, reason) {
    return this._local(gw, { kind: 'status', exchange: gw.name, feed: 'gateway', state, reason })
  }

  _gapMsg (gw, st, expected, received, reason) {
    this.counters.gaps++
    return this._local(gw, { kind: 'gap', exchange: st.exchange, symbol: st.symbol, channel: st.channel, expected, received, reason })
  }

  _resetMsg (gw, st, reason) {
    return this._local(gw, { kind: 'reset', exchange: st.exchange, symbol: st.symbol, channel: st.channel, reason })
  }

  // -- gateways and epochs --------------------------------------------------------------

  _gateway (name, epoch, now, out) {
    let gw = this.gateways.get(name)
    if (gw === undefined) {
      gw = new GatewayState(name, epoch, now)
      this.gateways.set(name, gw)
      return gw
    }
    if (epoch === gw.epoch) return gw
    if (epoch < gw.epoch) {
      this.counters.old_epoch++
      return null
    }
    // The publisher restarted: its sequences and state start over.
    this.counters.epochs++
    for (const st of gw.states.values()) {
      if (st.stateful && st.live) {
        out.push(this._gapMsg(gw, st, null, null, 'publisher restarted (new epoch)'))
        st.hadValid = true
      }
      st.live = false
      st.seq = 0n
      st.buffer = []
    }
    gw.epoch = epoch
    for (const [rid, r] of [...this.requests]) if (r.gateway === name) this.requests.delete(rid)
    if (gw.seenOnSub && this.books) this._requestGateway(gw, this.prefixes, now)
    return gw
  }

  _alive (gw, now, out) {
    gw.lastSeen = now
    if (gw.stale) {
      gw.stale = false
      out.push(this._status(gw, 'connected', 'messages resumed'))
    }
  }

  // -- the PUB stream -------------------------------------------------------------------

  /** One multipart message from the SUB socket -> messages to deliver. */
  onSub (frames, now) {
    let msg
    try {
      msg = decode(frames)
    } catch (err) {
      this._junk(err.code === 'unknown_kind' ? 'unknown_kind' : 'junk', err)
      return []
    }
    this.counters.messages++
    const out = []
    const { topic, header, event } = msg
    const gw = this._gateway(header.gateway, header.epoch, now, out)
    if (gw === null) return out
    this._alive(gw, now, out)
    if (!gw.seenOnSub) {
      gw.seenOnSub = true
      // The stream of this gateway flows, so our subscriptions are active: a snapshot
      // asked for now is guaranteed to connect to what we receive next.
      if (this.books) this._requestGateway(gw, this.prefixes, now)
    }
    let st = gw.states.get(topic)
    if (st === undefined) {
      st = new TopicState(topic, this.books && STATEFUL.has(topic.slice(0, topic.indexOf('.'))), event)
      gw.states.set(topic, st)
    }
    const seq = header.seq
    if (!st.stateful) {
      if (st.seq === 0n || seq === st.seq + 1n) {
        st.seq = seq
      } else if (seq <= st.seq) {
        this.counters.duplicates++
        return out
      } else {
        if (CONTROL.has(st.channel)) this.counters.control_gaps++
        else out.push(this._gapMsg(gw, st, st.seq + 1n, seq, 'sequence gap'))
        st.seq = seq
      }
      if (event.kind === 'heartbeat') {
        this._checkTails(gw, event, now, out)
        if (!this.deliverHeartbeats) return out
      } else if (event.kind === 'gap' && this.books) {
        this._publisherGap(gw, event, now)
      }
      out.push(msg)
      return out
    }
    if (st.live) {
      if (seq === st.seq + 1n) {
        st.seq = seq
        out.push(msg)
      } else if (seq <= st.seq) {
        this.counters.duplicates++
      } else {
        out.push(this._gapMsg(gw, st, st.seq + 1n, seq, 'sequence gap'))
        this._invalidate(gw, st, now)
        st.buffer.push(msg)
      }
      return out
    }
    if (seq <= st.seq) {
      // Older than the book we last held (a snapshot reply overtook the stream, then a gap read
      // from the stream took the book: _publisherGap): the state is not to go back.
      this.counters.duplicates++
      return out
    }
    // Not live: start from this message if nothing can precede it, else wait for a snapshot.
    if (event.kind === 'book_snapshot' || event.kind === 'l3_snapshot' || (seq === 1n && st.buffer.length === 0)) {
      st.buffer = []
      this._goLive(gw, st, msg, out)
      return out
    }
    if (st.buffer.length >= this.maxBuffer) {
      this.counters.buffer_overflows++
      st.buffer = []
    }
    st.buffer.push(msg)
    this._requestGateway(gw, [topic], now)
    return out
  }

  _checkTails (gw, hb, now, out) {
    // PUB keeps order: a live book behind the sequence a heartbeat lists lost its last
    // messages, which no later message on that topic would have revealed.
    const isMap = (v) => v !== null && v !== undefined && typeof v === 'object' && !Array.isArray(v)
    const seqs = hb.counters.book_seqs
    for (const [topic, seq] of Object.entries(isMap(seqs) ? seqs : {})) {
      const st = gw.states.get(topic)
      if (st === undefined || typeof seq !== 'bigint') continue
      if (st.stateful && st.live && seq > st.seq) {
        out.push(this._gapMsg(gw, st, st.seq + 1n, seq, 'tail loss (seen in heartbeat)'))
        this._invalidate(gw, st, now)
      } else if (st.replySeq >= 0n && seq >= st.replySeq) {
        st.replySeq = -1n // the stream has passed the state the reply gave: a gap read from now on is newer
      }
    }
    // A live book the publisher lists as invalid, whose gap we did not see at that point of its
    // stream: we lost that gap (an invalid book publishes nothing that would reveal it).
    const invalid = hb.counters.book_invalid
    for (const [topic, seq] of Object.entries(isMap(invalid) ? invalid : {})) {
      const st = gw.states.get(topic)
      if (st !== undefined && st.stateful && st.live && typeof seq === 'bigint' && st.seq <= seq &&
          st.gapSeenAt !== seq) {
        out.push(this._gapMsg(gw, st, null, null, 'publisher gap lost (seen in heartbeat)'))
        this._invalidate(gw, st, now)
      }
    }
  }

  // The publisher announced books invalid (the BookKeeper drops them): note where each one's
  // stream stood, so that a heartbeat's book_invalid is not taken for a lost gap. A book live
  // from a snapshot reply that no stream message (nor heartbeat) has shown the stream past yet
  // may hold a state newer than this gap (the reply overtook the stream): it is rebuilt from a
  // fresh snapshot, as the stream's rebuild of it is older (bus/subscriber.py, _publisher_gap).
  _publisherGap (gw, gap, now) {
    if (!STATEFUL.has(gap.channel)) return
    const scope = gapScope(gap)
    for (const st of gw.states.values()) {
      if (!st.topic.startsWith(scope)) continue
      st.gapSeenAt = st.seq
      if (st.live && st.seq === st.replySeq) this._invalidate(gw, st, now)
    }
  }

  _invalidate (gw, st, now) {
    st.live = false
    st.hadValid = true
    st.buffer = []
    this.counters.resyncs++
    this._requestGateway(gw, [st.topic], now)
  }

  _goLive (gw, st, first, out) {
    if (st.hadValid) out.push(this._resetMsg(gw, st, 'rebuilt from snapshot'))
    st.live = true
    st.seq = first.header.seq
    st.replySeq = -1n
    out.push(first)
    const buffered = st.buffer
    st.buffer = []
    for (let i = 0; i < buffered.length; i++) {
      const m = buffered[i]
      const s = m.header.seq
      if (s <= st.seq) continue
      if (s !== st.seq + 1n) {
        out.push(this._gapMsg(gw, st, st.seq + 1n, s, 'sequence gap'))
        this._invalidate(gw, st, gw.lastSeen)
        st.buffer = buffered.slice(i)
        return
      }
      st.seq = s
      out.push(m)
    }
  }

  // -- the snapshot service -------------------------------------------------------------

  /** One reply message from snapshot endpoint `endpoint` -> messages to deliver. */
  onSnapshot (endpoint, frames, now) {
    let reply
    try {
      reply = decodeReply(frames)
    } catch (err) {
      this._junk('snapshot_junk', err)
      return []
    }
    const r = this.requests.get(reply.requestId)
    if (r === undefined || r.endpoint !== endpoint) return [] // late answer to a retried request
    if (reply.type === 'item') {
      if (r.items.length < this.maxBuffer) r.items.push(reply)
      return []
    }
    this.requests.delete(reply.requestId)
    const out = []
    this.endpointOf.set(reply.gateway, endpoint)
    const gw = this._gateway(reply.gateway, reply.epoch, now, out)
    if (gw === null) return out
    if (r.kind === HELLO) {
      if (gw.needSnapshot) {
        gw.needSnapshot = false
        this._requestGateway(gw, this.prefixes, now)
      }
      return out
    }
    if (BigInt(r.items.length) !== reply.count) {
      this.counters.snapshot_junk++
      this._send(endpoint, gw.name, r.kind, r.prefix, now)
      return out
    }
    const seen = new Set()
    for (const item of r.items) {
      const h = item.header
      if (h.gateway !== gw.name || h.epoch !== gw.epoch) continue
      seen.add(item.topic)
      let st = gw.states.get(item.topic)
      if (st === undefined) {
        st = new TopicState(item.topic, STATEFUL.has(item.topic.slice(0, item.topic.indexOf('.'))), item.event)
        gw.states.set(item.topic, st)
      }
      const msg = { topic: item.topic, header: h, event: item.event }
      if (st.stateful) {
        if (!st.live && h.seq < st.seq) {
          // Served before a state we held since (a reply read late, to a request that covered a
          // later resync too): the book is not to go back; ask again.
          this._requestGateway(gw, [st.topic], now)
        } else if (!st.live) {
          this._goLive(gw, st, msg, out)
          if (st.live && st.seq === h.seq) st.replySeq = h.seq // nothing buffered followed it: the stream is behind
        }
      } else if (st.seq === 0n || h.seq > st.seq) {
        // A last value newer than anything we have (a late joiner's ticker/bbo/...).
        st.seq = h.seq
        out.push(msg)
      }
    }
    // Topics we wait for that the publisher did not have when it answered: a buffer that
    // starts at sequence 1 is complete, otherwise our request raced the stream.
    for (const st of gw.states.values()) {
      if (st.stateful && !st.live && st.buffer.length > 0 && st.topic.startsWith(r.prefix) && !seen.has(st.topic)) {
        if (st.buffer[0].header.seq === 1n) {
          const first = st.buffer.shift()
          this._goLive(gw, st, first, out)
        } else {
          this._requestGateway(gw, [st.topic], now)
        }
      }
    }
    return out
  }

  _junk (counter, err) {
    const n = ++this.counters[counter]
    if (this.log && (n <= 10 || n % 1000 === 0)) this.log(`skipping malformed frames (${n} so far): ${err.message}`)
  }

  // -- queries --------------------------------------------------------------------------

  /** True when every gateway publishing `topic` has it in sync. */
  isLive (topic) {
    const states = [...this.gateways.values()].map((g) => g.states.get(topic)).filter((s) => s !== undefined)
    return states.length > 0 && states.every((s) => s.live || !s.stateful)
  }
}

/**
 * The books of the messages a user has received, in the order received: book_snapshot
 * replaces a book, book_delta updates it, a Gap on a book channel drops it. book() thus
 * always matches the last message handed to the user, never messages decoded ahead.
 */
class BookKeeper {
  constructor () {
    this.books = new Map() // book topic -> Map(gateway -> OrderBook)
  }

  onDelivered (m) {
    const ev = m.event
    const gw = m.header.gateway
    if (ev.kind === 'book_delta') {
      const b = this.books.get(m.topic)?.get(gw)
      if (b !== undefined) b.applyDelta(ev.bids, ev.asks, ev.sequence)
    } else if (ev.kind === 'book_snapshot') {
      const b = new OrderBook()
      b.applySnapshot(ev.bids, ev.asks, ev.sequence)
      if (!this.books.has(m.topic)) this.books.set(m.topic, new Map())
      this.books.get(m.topic).set(gw, b)
    } else if (ev.kind === 'gap' && ev.channel === 'book') {
      const scope = gapScope(ev) // a null symbol: every book of that exchange from that gateway
      for (const [name, perGw] of this.books) if (name.startsWith(scope)) perGw.delete(gw)
    }
  }

  book (exchange, symbol) {
    const perGw = this.books.get(topicOf({ kind: 'book_snapshot', exchange, symbol }))
    if (perGw === undefined || perGw.size === 0) return null
    return perGw.values().next().value
  }

  /** [gateway, topic, OrderBook] of every book, sorted by topic then gateway. */
  all () {
    const out = []
    for (const [topic, perGw] of this.books) for (const [gw, b] of perGw) out.push([gw, topic, b])
    return out.sort((x, y) => (x[1] === y[1] ? (x[0] < y[0] ? -1 : 1) : (x[1] < y[1] ? -1 : 1)))
  }
}

/** Decode one snapshot-service reply: {type:'item', requestId, topic, header, event} or {type:'end', ...}. */
function decodeReply (frames) {
  if (frames.length === 4) {
    const m = decode(frames.slice(1))
    return { type: 'item', requestId: Buffer.from(frames[0]).toString('latin1'), ...m }
  }
  const kind = frames.length === 3 ? Buffer.from(frames[1]).toString('latin1') : ''
  if (kind === 'END') {
    const v = unpack(frames[2], 'snapshot end marker')
    if (!Array.isArray(v) || v.length < 4 || v[0] !== 1n || typeof v[1] !== 'string' || typeof v[2] !== 'bigint' || typeof v[3] !== 'bigint') {
      throw new WireError('snapshot end marker: expected [version, gateway, epoch, count]')
    }
    return { type: 'end', requestId: Buffer.from(frames[0]).toString('latin1'), gateway: v[1], epoch: v[2], count: v[3] }
  }
  if (kind === 'ERROR') throw new WireError(`snapshot service error: ${Buffer.from(frames[2]).toString('utf8').slice(0, 200)}`)
  throw new WireError(`snapshot reply: unexpected shape (${frames.length} frames)`)
}

module.exports = { SubscriberCore, BookKeeper, decodeReply, gapPrefixes, HEARTBEAT_PREFIX, SNAPSHOT, HELLO }
