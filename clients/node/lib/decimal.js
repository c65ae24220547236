'use strict'
/**
 * Exact decimal strings (docs/wire.md §5): grammar check, numeric comparison and the
 * canonical form used to key book levels. No floating point anywhere: "1.50" and "1.5"
 * are the same price, compared digit by digit.
 */

const PLAIN = /^-?[0-9]+(\.[0-9]+)?$/

function isPlainDecimal (s) {
  return PLAIN.test(s)
}

/** Canonical text: no leading zeros, no trailing fraction zeros, '-0' -> '0'. */
function canonical (s) {
  let neg = s[0] === '-'
  let body = neg ? s.slice(1) : s
  let [int, frac = ''] = body.split('.')
  int = int.replace(/^0+/, '') || '0'
  frac = frac.replace(/0+$/, '')
  body = frac ? `${int}.${frac}` : int
  if (body === '0') neg = false
  return neg ? '-' + body : body
}

function cmpAbs (a, b) {
  const [ai, af = ''] = a.split('.')
  const [bi, bf = ''] = b.split('.')
  if (ai.length !== bi.length) return ai.length < bi.length ? -1 : 1
  if (ai !== bi) return ai < bi ? -1 : 1
  const n = Math.max(af.length, bf.length)
  const x = af.padEnd(n, '0')
  const y = bf.padEnd(n, '0')
  return x === y ? 0 : (x < y ? -1 : 1)
}

/** Numeric comparison of two plain decimal strings: -1, 0 or 1. */
function compare (a, b) {
  a = canonical(a)
  b = canonical(b)
  const na = a[0] === '-'
  const nb = b[0] === '-'
  if (na !== nb) return na ? -1 : 1
  const c = cmpAbs(na ? a.slice(1) : a, nb ? b.slice(1) : b)
  return na ? -c : c
}

function isZero (s) {
  return canonical(s) === '0'
}

module.exports = { isPlainDecimal, canonical, compare, isZero }
