'use strict'
/** Book and decimal behaviour the subscriber depends on. */

const test = require('node:test')
const assert = require('node:assert')
const { OrderBook } = require('../lib/book')
const { compare, canonical, isPlainDecimal } = require('../lib/decimal')

test('decimals compare numerically, never as text', () => {
  assert.strictEqual(compare('1.50', '1.5'), 0)
  assert.strictEqual(compare('9.9', '10'), -1)
  assert.strictEqual(compare('-2', '-10'), 1)
  assert.strictEqual(compare('-0', '0.000'), 0)
  assert.strictEqual(canonical('007.2500'), '7.25')
  assert.ok(isPlainDecimal('0.35210000') && !isPlainDecimal('1e-5') && !isPlainDecimal('.5'))
})

test('book keeps the latest strings, deletes on zero, orders best first', () => {
  const b = new OrderBook()
  b.applySnapshot([['100.0', '1'], ['99.5', '2'], ['101', '3']], [['102', '1'], ['101.5', '2']], 5n)
  assert.deepStrictEqual(b.snapshot().bids, [['101', '3'], ['100.0', '1'], ['99.5', '2']])
  assert.deepStrictEqual(b.snapshot().asks, [['101.5', '2'], ['102', '1']])
  b.applyDelta([['100.00', '7.10'], ['101.0', '0']], [['102', '0.000']])
  assert.deepStrictEqual(b.snapshot().bids, [['100.00', '7.10'], ['99.5', '2']])
  assert.deepStrictEqual(b.snapshot().asks, [['101.5', '2']])
  assert.strictEqual(b.sequence, 5n)
  assert.ok(!b.isCrossed())
})
