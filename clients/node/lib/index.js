'use strict'
/** feedfabric client for Node.js: wire v1 decoding, snapshot recovery and L2 books. */

const codec = require('./codec')
const { OrderBook } = require('./book')
const decimal = require('./decimal')
const { SubscriberCore, BookKeeper, decodeReply } = require('./core')
const { Subscriber } = require('./subscriber')
const { toCanonicalJSON, messageLine, bookLine } = require('./canonical')

module.exports = {
  ...codec, OrderBook, decimal, SubscriberCore, BookKeeper, decodeReply, Subscriber, toCanonicalJSON, messageLine, bookLine
}
