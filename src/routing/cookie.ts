/**
 * Reads one cookie's value out of a Cookie header without splitting it into
 * a map: the request path only ever needs one or two names. (Hand-written:
 * a cookie library would parse the whole header into an object per request.)
 */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  const n = name.length
  let i = 0
  const len = header.length
  while (i < len) {
    while (i < len && (header.charCodeAt(i) === 32 || header.charCodeAt(i) === 9)) i++
    let end = header.indexOf(';', i)
    if (end === -1) end = len
    if (header.charCodeAt(i + n) === 61 /* = */ && header.startsWith(name, i)) {
      let vStart = i + n + 1
      let vEnd = end
      while (vEnd > vStart && header.charCodeAt(vEnd - 1) === 32) vEnd--
      if (header.charCodeAt(vStart) === 34 && vEnd - vStart >= 2 && header.charCodeAt(vEnd - 1) === 34) {
        vStart++
        vEnd--
      }
      return header.slice(vStart, vEnd)
    }
    i = end + 1
  }
  return undefined
}
