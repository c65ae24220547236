'use strict'
/**
 * The canonical JSON line format shared by the Node, C and Python example subscribers
 * (docs/clients.md): one object per delivered message and per final book, integers printed
 * exactly (BigInt), decimals as their strings, keys in wire order.
 */

function toCanonicalJSON (v) {
  if (v === null || v === undefined) return 'null'
  if (typeof v === 'bigint') return v.toString()
  if (typeof v === 'number') return Number.isFinite(v) ? JSON.stringify(v) : 'null'
  if (typeof v === 'string' || typeof v === 'boolean') return JSON.stringify(v)
  if (Array.isArray(v)) return '[' + v.map(toCanonicalJSON).join(',') + ']'
  if (v instanceof Uint8Array) return JSON.stringify(Buffer.from(v).toString('hex'))
  return '{' + Object.keys(v).map((k) => JSON.stringify(k) + ':' + toCanonicalJSON(v[k])).join(',') + '}'
}

/** {"type":"msg", topic, gateway, epoch, seq, timestamp, receipt_timestamp, event}. */
function messageLine (m) {
  const h = m.header
  return toCanonicalJSON({
    type: 'msg', topic: m.topic, gateway: h.gateway, epoch: h.epoch, seq: h.seq,
    timestamp: h.timestamp, receipt_timestamp: h.receipt_timestamp, event: m.event
  })
}

/** {"type":"book", gateway, topic, bids, asks} (levels best first). */
function bookLine (gateway, topic, book) {
  const { bids, asks } = book.snapshot()
  return toCanonicalJSON({ type: 'book', gateway, topic, bids, asks })
}

module.exports = { toCanonicalJSON, messageLine, bookLine }
