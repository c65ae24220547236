'use strict'
/**
 * The shared wire vectors (tests/vectors/wire_v1.json): every valid vector decodes to
 * exactly its topic, header and event; every invalid one is refused with a WireError.
 * FEEDFABRIC_VECTORS overrides the file's path.
 */

const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const path = require('node:path')
const { decode, WireError } = require('../lib/codec')
const { parse } = require('./json_bigint')

const file = process.env.FEEDFABRIC_VECTORS || path.join(__dirname, '..', '..', '..', 'tests', 'vectors', 'wire_v1.json')
const vectors = parse(fs.readFileSync(file, 'utf8'))

test('the vector file is not empty and has both kinds', () => {
  assert.ok(vectors.some((v) => v.invalid === true))
  assert.ok(vectors.some((v) => v.invalid !== true))
})

for (const v of vectors) {
  const frames = v.frames_hex.map((h) => Buffer.from(h, 'hex'))
  if (v.invalid) {
    test(`refuses ${v.name}`, () => {
      assert.throws(() => decode(frames), (err) => err instanceof WireError)
    })
  } else {
    test(`decodes ${v.name}`, () => {
      const got = decode(frames)
      assert.strictEqual(got.topic, v.topic)
      assert.deepStrictEqual(got.header, { ...v.header, version: Number(v.header.version) })
      assert.deepStrictEqual(got.event, v.event)
    })
  }
}
