'use strict'
/**
 * The feedfabric wire v1 decoder (docs/wire.md): three ZeroMQ frames [topic, header, body]
 * -> {topic, header, event}. Every invalid message raises WireError and nothing else.
 *
 * Integers: every msgpack integer is returned as a BigInt (timestamps and sequence numbers
 * exceed 2^53); msgpack floats (only possible inside heartbeat maps) are Numbers. Decimals
 * stay the exact strings the publisher sent.
 */

const { Decoder } = require('@msgpack/msgpack')
const { KINDS } = require('./kinds')
const { isPlainDecimal } = require('./decimal')

const WIRE_VERSION = 1n
const MAX_FRAME = 16 * 1024 * 1024
const MAX_TOPIC = 512

class WireError extends Error {
  constructor (message, code) {
    super(message)
    this.name = 'WireError'
    // 'unknown_kind' for a well-formed message of a kind this client does not know (to skip
    // and count, docs/wire.md §8), 'version' for another wire version, else 'invalid'.
    this.code = code || 'invalid'
  }
}

// msgpack floats must stay distinguishable from integers (a float 2.0 is not a valid
// timestamp), but @msgpack/msgpack returns both as Number: box floats while decoding.
class WireFloat {
  constructor (value) { this.value = value }
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true })

// Also refuses what the reference decoder (msgpack-python, raw=False, strict_map_key)
// refuses and @msgpack/msgpack would let through: str that is not UTF-8 (it substitutes
// U+FFFD), map keys that are not str; ext types (never on the wire) are refused too.
class StrictDecoder extends Decoder {
  readF32 () { return new WireFloat(super.readF32()) }
  readF64 () { return new WireFloat(super.readF64()) }
  decodeUtf8String (byteLength, headerOffset) {
    const start = this.pos + headerOffset
    if (this.bytes.byteLength >= start + byteLength) fatalUtf8.decode(this.bytes.subarray(start, start + byteLength))
    return super.decodeUtf8String(byteLength, headerOffset)
  }

  decodeExtension () { throw new TypeError('msgpack ext types are not part of the wire') }
}

const strKeysOnly = (key) => {
  if (typeof key === 'string') return key
  throw new TypeError('map keys must be str')
}

const decoder = new StrictDecoder({ useBigInt64: true, mapKeyConverter: strKeysOnly })

function unpack (frame, what) {
  if (!(frame instanceof Uint8Array)) throw new WireError(`${what}: expected bytes`)
  if (frame.length > MAX_FRAME) throw new WireError(`${what}: ${frame.length} bytes exceeds the ${MAX_FRAME} byte limit`)
  try {
    return normalize(decoder.decode(frame))
  } catch (err) {
    throw new WireError(`${what}: not valid msgpack (${err.message})`)
  }
}

// Integers -> BigInt, boxed floats -> Number, recursively (after decoding, floats and
// integers are told apart by type: bigint vs number).
function normalize (v) {
  if (typeof v === 'number') return BigInt(v)
  if (v instanceof WireFloat) return v.value
  if (Array.isArray(v)) return v.map(normalize)
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
    const out = {}
    for (const k of Object.keys(v)) out[k] = normalize(v[k])
    return out
  }
  return v
}

const isInt = (v) => typeof v === 'bigint'
const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array)

function decodeTopic (frame) {
  if (!(frame instanceof Uint8Array)) throw new WireError('topic: expected bytes')
  if (frame.length > MAX_TOPIC) throw new WireError(`topic: longer than ${MAX_TOPIC} bytes`)
  for (const b of frame) if (b > 0x7f) throw new WireError('topic: not ASCII')
  const topic = Buffer.from(frame).toString('latin1')
  if (!topic.endsWith('.') || topic.split('.').length < 3) {
    throw new WireError(`topic: ${JSON.stringify(topic.slice(0, 80))} does not end with the '.' terminator`)
  }
  return topic
}

function decodeHeader (frame) {
  const h = unpack(frame, 'header')
  if (!Array.isArray(h) || h.length < 7) throw new WireError('header: expected a msgpack array of 7 items')
  const [version, gateway, epoch, seq, timestamp, receiptTimestamp, publishTimestamp] = h
  if (version !== WIRE_VERSION) throw new WireError(`header: unsupported wire version ${String(version)}`, 'version')
  if (typeof gateway !== 'string' || !isInt(epoch) || !isInt(seq)) {
    throw new WireError('header: gateway must be str, epoch and seq int')
  }
  if ((timestamp !== null && !isInt(timestamp)) || !isInt(receiptTimestamp) || !isInt(publishTimestamp)) {
    throw new WireError('header: timestamps must be integer nanoseconds')
  }
  return {
    version: Number(version),
    gateway,
    epoch,
    seq,
    timestamp,
    receipt_timestamp: receiptTimestamp,
    publish_timestamp: publishTimestamp
  }
}

function checkField (name, type, v) {
  const bad = (what) => { throw new TypeError(`${name}: expected ${what}`) }
  const opt = type.endsWith('?')
  if (v === undefined || v === null) {
    if (opt) return null
    if (v === undefined) bad('a value (required key missing)')
    bad(type)
  }
  switch (opt ? type.slice(0, -1) : type) {
    case 'str': if (typeof v !== 'string') bad('str'); return v
    case 'dec': if (typeof v !== 'string' || !isPlainDecimal(v)) bad('a plain decimal string'); return v
    case 'int': if (!isInt(v)) bad('int'); return v
    case 'bool': if (typeof v !== 'boolean') bad('bool'); return v
    case 'map': if (!isMap(v)) bad('a map'); return v
    case 'levels':
      if (!Array.isArray(v)) bad('an array of [price, size]')
      for (const lvl of v) {
        if (!Array.isArray(lvl) || lvl.length !== 2) bad('levels of [price, size]')
        for (const x of lvl) if (typeof x !== 'string' || !isPlainDecimal(x)) bad('plain decimal strings in levels')
      }
      return v
    case 'orders':
      if (!Array.isArray(v)) bad('an array of [id, side, price, size]')
      for (const row of v) {
        if (!Array.isArray(row) || row.length !== 4) bad('orders of [id, side, price, size]')
        if (typeof row[0] !== 'string') bad('a str order id')
        if (row[1] !== 'bid' && row[1] !== 'ask') bad("order side 'bid' or 'ask'")
        for (const x of row.slice(2)) if (typeof x !== 'string' || !isPlainDecimal(x)) bad('plain decimal strings in orders')
      }
      return v
    default: throw new TypeError(`unknown field type ${type}`)
  }
}

/** Validate a decoded body map -> the event object: kind first, then every field in table order. */
function decodeBody (frame) {
  const body = unpack(frame, 'body')
  if (!isMap(body)) throw new WireError('body: expected a msgpack map')
  const kind = body.kind
  const spec = typeof kind === 'string' && Object.prototype.hasOwnProperty.call(KINDS, kind) ? KINDS[kind] : null
  if (spec === null) {
    throw new WireError(`body: unknown event kind ${JSON.stringify(kind === undefined ? null : kind)}`,
      typeof kind === 'string' ? 'unknown_kind' : 'invalid')
  }
  const event = { kind }
  try {
    for (const [name, type] of spec.fields) event[name] = checkField(name, type, body[name])
  } catch (err) {
    throw new WireError(`body: invalid ${kind}: ${err.message}`)
  }
  return event
}

/** One topic component: '.' and ' ' become '_', null becomes '_'. */
function topicPart (v) {
  return v === null || v === undefined ? '_' : v.replace(/[. ]/g, '_')
}

/** The topic of an event (as the publisher computes it from the body). */
function topicOf (event) {
  const spec = KINDS[event.kind]
  return [spec.channel, ...spec.topicKeys.map((k) => topicPart(event[k]))].join('.') + '.'
}

/** Decode [topic, header, body] -> {topic, header, event}; throws WireError. */
function decode (frames) {
  if (!Array.isArray(frames) || frames.length !== 3) {
    throw new WireError(`expected 3 frames, got ${Array.isArray(frames) ? frames.length : typeof frames}`)
  }
  const topic = decodeTopic(frames[0])
  const header = decodeHeader(frames[1])
  const event = decodeBody(frames[2])
  const expected = topicOf(event)
  if (expected !== topic) {
    throw new WireError(`topic ${JSON.stringify(topic.slice(0, 80))} does not match the body (${JSON.stringify(expected.slice(0, 80))})`)
  }
  return { topic, header, event }
}

/** The channel of an event kind ('book' for book_snapshot/book_delta, ...). */
function channelOf (kind) {
  return KINDS[kind].channel
}

module.exports = { WireError, decode, decodeTopic, decodeHeader, decodeBody, topicOf, topicPart, channelOf, unpack, KINDS, WIRE_VERSION, MAX_FRAME, MAX_TOPIC }
