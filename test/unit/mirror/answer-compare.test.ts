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
})
