#!/usr/bin/env node
'use strict'
/**
 * Decode each line "name<TAB>anything<TAB>hex,hex,..." of a file (the format of
 * clients/c/vectors_tsv.py) and print "name<TAB>{topic, header, event}" as canonical JSON,
 * or "name<TAB>INVALID" when the decoder refuses the frames. Used by the differential
 * test against the Python reference decoder (tests/clients/test_vectors.py).
 */

const fs = require('node:fs')
const { decode, WireError } = require('../lib/codec')
const { toCanonicalJSON } = require('../lib/canonical')

const out = []
for (const line of fs.readFileSync(process.argv[2], 'utf8').split('\n')) {
  if (!line) continue
  const [name, , hex] = line.split('\t')
  const frames = hex.split(',').map((h) => Buffer.from(h, 'hex'))
  try {
    out.push(`${name}\t${toCanonicalJSON(decode(frames))}`)
  } catch (err) {
    if (!(err instanceof WireError)) throw err
    out.push(`${name}\tINVALID`)
  }
}
process.stdout.write(out.join('\n') + '\n')
