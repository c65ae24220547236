'use strict'
/**
 * An L2 order book keyed by exact decimal prices. Each level keeps the publisher's own
 * (price, size) strings from its latest update; a size of zero deletes the level.
 * Sides are sorted arrays of canonical price keys (binary search), best first on output.
 */

const { canonical, compare, isZero } = require('./decimal')

class BookSide {
  constructor (descending) {
    this.descending = descending
    this.keys = [] // canonical prices, ascending
    this.levels = new Map() // canonical price -> [price, size]
  }

  _index (key) {
    let lo = 0
    let hi = this.keys.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (compare(this.keys[mid], key) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  set (price, size) {
    const key = canonical(price)
    if (isZero(size)) {
      if (this.levels.delete(key)) this.keys.splice(this._index(key), 1)
      return
    }
    if (!this.levels.has(key)) this.keys.splice(this._index(key), 0, key)
    this.levels.set(key, [price, size])
  }

  clear () {
    this.keys = []
    this.levels.clear()
  }

  /** Levels best first, [price, size] strings. */
  top (n = -1) {
    const keys = this.descending ? [...this.keys].reverse() : this.keys
    const sel = n < 0 ? keys : keys.slice(0, n)
    return sel.map((k) => this.levels.get(k))
  }

  best () {
    if (this.keys.length === 0) return null
    return this.levels.get(this.descending ? this.keys[this.keys.length - 1] : this.keys[0])
  }

  get size () { return this.keys.length }
}

class OrderBook {
  constructor () {
    this.bids = new BookSide(true)
    this.asks = new BookSide(false)
    this.sequence = null
  }

  applySnapshot (bids, asks, sequence = null) {
    this.bids.clear()
    this.asks.clear()
    this.applyDelta(bids, asks, sequence)
  }

  applyDelta (bids, asks, sequence = null) {
    for (const [p, s] of bids) this.bids.set(p, s)
    for (const [p, s] of asks) this.asks.set(p, s)
    if (sequence !== null && sequence !== undefined) this.sequence = sequence
  }

  bestBid () { return this.bids.best() }
  bestAsk () { return this.asks.best() }

  isCrossed () {
    const b = this.bids.best()
    const a = this.asks.best()
    return b !== null && a !== null && compare(b[0], a[0]) >= 0
  }

  snapshot (depth = -1) {
    return { bids: this.bids.top(depth), asks: this.asks.top(depth) }
  }
}

module.exports = { OrderBook, BookSide }
