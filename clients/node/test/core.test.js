'use strict'
/**
 * The sans-I/O subscriber core on hand-made frames: late join through the snapshot service,
 * a sequence gap and its recovery, duplicates, junk and a publisher restart.
 */

const test = require('node:test')
const assert = require('node:assert')
const { encode } = require('@msgpack/msgpack')
const { SubscriberCore, BookKeeper, gapPrefixes } = require('../lib/core')

const TOPIC = 'book.EX.A-B.'
const pack = (v) => Buffer.from(encode(v, { useBigInt64: true }))

function frames (seq, kind, bids, epoch = 10n) {
  const body = { kind, exchange: 'EX', symbol: 'A-B', bids, asks: [['101', '1']], sequence: null, checksum: null, exchange_symbol: null }
  return [Buffer.from(TOPIC), pack([1, 'gw', epoch, BigInt(seq), null, 5n, 6n]), pack(body)]
}

const end = (rid, count, epoch = 10n) => [Buffer.from(rid), Buffer.from('END'), pack([1, 'gw', epoch, count])]
const takeRequest = (core) => {
  const [ep, [kind, prefix, rid]] = core.outbox.shift()
  return { ep, kind: kind.toString(), prefix: prefix.toString(), rid: rid.toString() }
}
const summary = (msgs) => msgs.map((m) => `${m.event.kind}:${m.header.seq}` + (m.event.kind === 'gap' ? `:${m.event.expected}-${m.event.received}` : ''))

test('late join, gap, duplicate, junk and restart', () => {
  const core = new SubscriberCore(['book.'], [0], { log: null })
  const books = new BookKeeper()
  const deliver = (msgs) => { msgs.forEach((m) => books.onDelivered(m)); return summary(msgs) }
  core.start(0)
  const hello = takeRequest(core)
  assert.deepStrictEqual([hello.kind, hello.prefix], ['HELLO', ''])
  assert.deepStrictEqual(core.onSnapshot(0, end(hello.rid, 0n), 0), [])

  // Late join: deltas 5..7 are buffered until the snapshot (seq 6) arrives.
  assert.deepStrictEqual(deliver(core.onSub(frames(5, 'book_delta', [['99', '1']]), 0)), [])
  const req = takeRequest(core)
  assert.deepStrictEqual([req.kind, req.prefix], ['SNAPSHOT', 'book.'])
  core.onSub(frames(6, 'book_delta', [['98', '1']]), 0)
  core.onSub(frames(7, 'book_delta', [['97', '2.50']]), 0)
  assert.strictEqual(core.outbox.length, 0, 'one request covers the topic')
  const item = [Buffer.from(req.rid), ...frames(6, 'book_snapshot', [['100', '1'], ['98', '1']])]
  assert.deepStrictEqual(core.onSnapshot(0, item, 0), [])
  assert.deepStrictEqual(deliver(core.onSnapshot(0, end(req.rid, 1n), 0)), ['book_snapshot:6', 'book_delta:7'])
  assert.deepStrictEqual(books.book('EX', 'A-B').snapshot().bids, [['100', '1'], ['98', '1'], ['97', '2.50']])

  // A gap: reported, the book dropped and asked for again; then Reset + fresh snapshot.
  assert.deepStrictEqual(deliver(core.onSub(frames(9, 'book_delta', [['96', '1']]), 0)), ['gap:0:8-9'])
  assert.strictEqual(books.book('EX', 'A-B'), null)
  const again = takeRequest(core)
  assert.strictEqual(again.prefix, TOPIC)
  core.onSnapshot(0, [Buffer.from(again.rid), ...frames(9, 'book_snapshot', [['95', '3']])], 0)
  assert.deepStrictEqual(deliver(core.onSnapshot(0, end(again.rid, 1n), 0)), ['reset:0', 'book_snapshot:9'])
  assert.deepStrictEqual(books.book('EX', 'A-B').snapshot().bids, [['95', '3']])

  // Duplicates and junk are counted and skipped.
  assert.deepStrictEqual(core.onSub(frames(9, 'book_delta', [['1', '1']]), 0), [])
  assert.deepStrictEqual(core.onSub([Buffer.from(TOPIC), Buffer.from([0xc1]), Buffer.from([0x80])], 0), [])
  assert.strictEqual(core.counters.duplicates, 1)
  assert.strictEqual(core.counters.junk, 1)

  // The publisher restarts: the live book is reported lost; seq 1 needs no snapshot.
  assert.deepStrictEqual(deliver(core.onSub(frames(1, 'book_delta', [['90', '1']], 11n), 1)),
    ['gap:0:null-null', 'reset:0', 'book_delta:1'])
  assert.strictEqual(core.counters.epochs, 1)
})

test('a silent gateway becomes stale and a request times out into a retry', () => {
  const core = new SubscriberCore(['book.'], [0], { heartbeatTimeout: 3, requestTimeout: 2, log: null })
  core.start(0)
  const hello = takeRequest(core)
  assert.deepStrictEqual(core.tick(2.5), [])
  const retry = takeRequest(core)
  assert.notStrictEqual(retry.rid, hello.rid)
  assert.strictEqual(core.counters.snapshot_timeouts, 1)
  core.onSnapshot(0, end(retry.rid, 0n), 2.5)
  const out = core.tick(6)
  assert.deepStrictEqual(out.map((m) => [m.topic, m.event.state]), [['status.gw.gateway.', 'stale']])
})

test('a gap in a control topic is counted, a gap in a plain topic reported', () => {
  const core = new SubscriberCore(['status.', 'trades.'], [0], { log: null })
  core.start(0)
  const hdr = (seq) => pack([1, 'gw', 10n, BigInt(seq), null, 5n, 6n])
  const status = (seq) => [Buffer.from('status.EX.ws.'), hdr(seq),
    pack({ kind: 'status', exchange: 'EX', feed: 'ws', state: 'connected', reason: null })]
  const trade = (seq) => [Buffer.from('trades.EX.A-B.'), hdr(seq),
    pack({ kind: 'trade', exchange: 'EX', symbol: 'A-B', side: 'buy', amount: '1', price: '2', id: null, type: null, exchange_symbol: null })]
  assert.deepStrictEqual(summary(core.onSub(status(1), 0)), ['status:1'])
  assert.deepStrictEqual(summary(core.onSub(status(3), 0)), ['status:3'])
  assert.strictEqual(core.counters.control_gaps, 1)
  assert.deepStrictEqual(summary(core.onSub(trade(1), 0)), ['trade:1'])
  assert.deepStrictEqual(summary(core.onSub(trade(3), 0)), ['gap:0:2-3', 'trade:3'])
  assert.strictEqual(core.counters.gaps, 1)
})

test('the gap. prefixes a client keeping books subscribes beside its own (as bus/subscriber.py gap_prefixes)', () => {
  assert.deepStrictEqual(gapPrefixes(['book.EX.']), ['gap.EX.'])
  assert.deepStrictEqual(gapPrefixes(['book.EX.A-B.', 'l3.EX.A-B.']), ['gap.EX.A-B.', 'gap.EX._.'])
  assert.deepStrictEqual(gapPrefixes(['book.']), ['gap.'])
  assert.deepStrictEqual(gapPrefixes(['']), ['gap.'])
  assert.deepStrictEqual(gapPrefixes(['bo']), ['gap.'])
  assert.deepStrictEqual(gapPrefixes(['trades.EX.', 'ticker.']), [])
})

// A core whose book went live from a snapshot reply (seq 13) ahead of the stream (at 11).
function liveFromAReplyAheadOfTheStream () {
  const core = new SubscriberCore([''], [0], { log: null })
  const books = new BookKeeper()
  const deliver = (msgs) => { msgs.forEach((m) => books.onDelivered(m)); return summary(msgs) }
  core.start(0)
  const hello = takeRequest(core)
  core.onSnapshot(0, end(hello.rid, 0n), 0)
  deliver(core.onSub(frames(11, 'book_delta', [['99', '1']]), 0))
  const req = takeRequest(core)
  core.onSnapshot(0, [Buffer.from(req.rid), ...frames(13, 'book_snapshot', [['100', '5']])], 0)
  assert.deepStrictEqual(deliver(core.onSnapshot(0, end(req.rid, 1n), 0)), ['book_snapshot:13'])
  return { core, books, deliver }
}
const hdr = (topicSeq) => pack([1, 'gw', 10n, BigInt(topicSeq), null, 5n, 6n])
const publisherGap = (seq) => [Buffer.from('gap.EX.A-B.'), hdr(seq),
  pack({ kind: 'gap', exchange: 'EX', symbol: 'A-B', channel: 'book', expected: null, received: null, reason: 'checksum' })]
const heartbeat = (seq, bookSeqs) => [Buffer.from('heartbeat.gw.'), hdr(seq),
  pack({ kind: 'heartbeat', gateway: 'gw', counters: { book_seqs: bookSeqs }, feeds: {} })]

test('a publisher gap older than the reply resnapshots the book, whose state never goes back (as bus/subscriber.py)', () => {
  const { core, books, deliver } = liveFromAReplyAheadOfTheStream()
  assert.deepStrictEqual(deliver(core.onSub(publisherGap(1), 0)), ['gap:1:null-null'])
  assert.strictEqual(books.book('EX', 'A-B'), null)
  const req = takeRequest(core)
  assert.deepStrictEqual([req.kind, req.prefix], ['SNAPSHOT', TOPIC])
  assert.deepStrictEqual(deliver(core.onSub(frames(12, 'book_snapshot', [['100', '4']]), 0)), [])
  assert.strictEqual(core.counters.duplicates, 1)
  assert.deepStrictEqual(deliver(core.onSub(frames(14, 'book_delta', [['98', '1']]), 0)), [])
  core.onSnapshot(0, [Buffer.from(req.rid), ...frames(13, 'book_snapshot', [['100', '5']])], 0)
  assert.deepStrictEqual(deliver(core.onSnapshot(0, end(req.rid, 1n), 0)), ['reset:0', 'book_snapshot:13', 'book_delta:14'])
  assert.deepStrictEqual(books.book('EX', 'A-B').snapshot().bids, [['100', '5'], ['98', '1']])
})

test('once the stream has passed the reply, a publisher gap is current', () => {
  for (const passed of ['delta', 'heartbeat']) {
    const { core, books, deliver } = liveFromAReplyAheadOfTheStream()
    if (passed === 'delta') deliver(core.onSub(frames(14, 'book_delta', [['97', '1']]), 0))
    else deliver(core.onSub(heartbeat(1, { [TOPIC]: 13n }), 0))
    deliver(core.onSub(publisherGap(1), 0))
    assert.strictEqual(books.book('EX', 'A-B'), null, passed)
    assert.strictEqual(core.outbox.length, 0, passed)
  }
})

test('a reply older than the state held since is not applied: the core asks again (as bus/subscriber.py)', () => {
  const { core, books, deliver } = liveFromAReplyAheadOfTheStream() // live at 13
  deliver(core.onSub(heartbeat(1, { [TOPIC]: 14n }), 0)) // tail loss: request 1
  const first = takeRequest(core)
  assert.deepStrictEqual(deliver(core.onSub(frames(16, 'book_snapshot', [['100', '6']]), 0)), ['reset:0', 'book_snapshot:16'])
  deliver(core.onSub(frames(17, 'book_delta', [['99', '2']]), 0))
  assert.deepStrictEqual(deliver(core.onSub(frames(19, 'book_delta', [['98', '1']]), 0)), ['gap:0:18-19'])
  assert.strictEqual(core.outbox.length, 0, 'request 1 still covers the topic')
  core.onSnapshot(0, [Buffer.from(first.rid), ...frames(14, 'book_snapshot', [['100', '1']])], 0)
  assert.deepStrictEqual(deliver(core.onSnapshot(0, end(first.rid, 1n), 0)), [])
  const again = takeRequest(core)
  assert.deepStrictEqual([again.kind, again.prefix], ['SNAPSHOT', TOPIC])
  core.onSnapshot(0, [Buffer.from(again.rid), ...frames(19, 'book_snapshot', [['100', '6'], ['98', '1']])], 0)
  assert.deepStrictEqual(deliver(core.onSnapshot(0, end(again.rid, 1n), 0)), ['reset:0', 'book_snapshot:19'])
  assert.deepStrictEqual(books.book('EX', 'A-B').snapshot().bids, [['100', '6'], ['98', '1']])
})
