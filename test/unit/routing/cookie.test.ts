import { describe, expect, it } from 'vitest'
import { readCookie } from '../../../src/routing/cookie.js'

describe('reading one cookie from a Cookie header', () => {
  it('finds a cookie anywhere in the header', () => {
    expect(readCookie('session=abc', 'session')).toBe('abc')
    expect(readCookie('a=1; session=abc; b=2', 'session')).toBe('abc')
    expect(readCookie('a=1;session=abc', 'session')).toBe('abc')
  })

  it('does not match a cookie whose name only starts or ends with the name', () => {
    expect(readCookie('sessionid=x; xsession=y', 'session')).toBeUndefined()
    expect(readCookie('sessionid=x; session=y', 'session')).toBe('y')
  })

  it('unquotes a quoted value and trims trailing spaces', () => {
    expect(readCookie('session="abc"', 'session')).toBe('abc')
    expect(readCookie('session=abc  ; b=2', 'session')).toBe('abc')
  })

  it('gives an empty string for an empty value and undefined when absent', () => {
    expect(readCookie('session=; b=2', 'session')).toBe('')
    expect(readCookie('b=2', 'session')).toBeUndefined()
    expect(readCookie(undefined, 'session')).toBeUndefined()
    expect(readCookie('', 'session')).toBeUndefined()
  })

  it('the first of two cookies with the same name wins', () => {
    expect(readCookie('session=one; session=two', 'session')).toBe('one')
  })
})
