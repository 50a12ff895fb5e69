import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { comparedHeaders, differences } from '../../../src/mirror/answer-compare.js'
import { compileMirror } from '../../../src/mirror/mirror-settings.js'
import { mirrorSchema } from '../../../src/config/schema.js'

describe('answer comparison', () => {
  const settings = compileMirror(mirrorSchema.parse({ version: 'green', ignore: ['X-Request-Id', '/at'] }))

  it('leaves out configured headers (any case), date, age and content-length', () => {
    const h = comparedHeaders(
      [
        'content-type',
        'application/json',
        'x-request-id',
        'abc',
        'date',
        'Mon',
        'age',
        '3',
        'content-length',
        '12',
        'set-cookie',
        ['a=1', 'b=2'],
      ],
      settings.ignoreHeaders,
    )
    expect(h).toEqual({ 'content-type': 'application/json', 'set-cookie': 'a=1\nb=2' })
    expect(settings.pointers).toEqual([['at']])
  })

  it('names what differs: status, each header, body', () => {
    const base = { status: 200, headers: { 'content-type': 'a', etag: '1' }, body: 'raw:1' }
    expect(differences(base, { ...base })).toEqual([])
    expect(
      differences(base, { status: 503, headers: { 'content-type': 'b', vary: 'x', etag: '1' }, body: 'raw:2' }),
    ).toEqual(['status', 'header:content-type', 'header:vary', 'body'])
  })

  it('names a header present on one side only, whatever the other headers (property)', () => {
    const headers = fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd'), fc.constantFrom('1', '2'))
    fc.assert(
      fc.property(headers, headers, (p, s) => {
        const named = differences({ status: 200, headers: p, body: '' }, { status: 200, headers: s, body: '' })
        const expected = [...new Set([...Object.keys(p), ...Object.keys(s)])]
          .filter((name) => p[name] !== s[name])
          .sort()
          .map((name) => `header:${name}`)
        expect(named).toEqual(expected)
      }),
    )
    expect(
      differences({ status: 200, headers: { a: '1', b: '2' }, body: '' }, { status: 200, headers: { a: '1', c: '2' }, body: '' }),
    ).toEqual(['header:b', 'header:c'])
  })
})
