import type { Redis } from 'ioredis'

/**
 * The Lua scripts of the Redis store. Each runs atomically on the Redis
 * server, which is what makes a commit a compare-and-set on the revision
 * and a lease acquisition one step. ioredis sends them by SHA and falls
 * back to the full text when a restarted Redis no longer knows them.
 */
/** Lua: `now`, the Redis server's clock in ms (so proxies' clocks need not agree). */
const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

const SCRIPTS = {
  /**
   * KEYS: state hash, audit list. ARGV: expected revision (0: the state is
   * absent), new revision, state JSON, channel, message, audit length kept,
   * audit entries (JSON) to append.
   * Returns {1} when written, {0, current state JSON or false} otherwise.
   */
  sluiceCas: {
    numberOfKeys: 2,
    lua: `
local cur = tonumber(redis.call('HGET', KEYS[1], 'revision') or '0')
if cur ~= tonumber(ARGV[1]) then
  return {0, redis.call('HGET', KEYS[1], 'json')}
end
redis.call('HSET', KEYS[1], 'revision', ARGV[2], 'json', ARGV[3])
if #ARGV >= 7 then
  for i = 7, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[6]), -1)
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return {1}
`,
  },
  /**
   * KEYS: lease key, fencing counter, hold key. ARGV: owner, lease ms.
   * Takes the lease when it is free (a new fencing token from the counter)
   * or extends it when this owner holds it. Returns the token, 0 when
   * another owner holds the lease.
   * A Redis without the counter has lost its data (or never had any): a
   * holder from before may still believe it leads for up to one lease, so
   * nobody gets the lease for one lease period. The counter restarts from
   * the Redis clock in ms, so tokens keep increasing across the loss.
   */
  sluiceLease: {
    numberOfKeys: 3,
    lua: `
if redis.call('EXISTS', KEYS[2]) == 0 then
  ${NOW_MS}  redis.call('SET', KEYS[2], now)
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
  return 0
end
local v = redis.call('GET', KEYS[1])
local mine = ARGV[1] .. '|'
if v then
  if string.sub(v, 1, #mine) == mine then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(v, #mine + 1))
  end
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], mine .. token, 'PX', ARGV[2])
return token
`,
  },
  /** KEYS: lease key. ARGV: owner. Frees the lease if this owner holds it. */
  sluiceRelease: {
    numberOfKeys: 1,
    lua: `
local v = redis.call('GET', KEYS[1])
local mine = ARGV[1] .. '|'
if v and string.sub(v, 1, #mine) == mine then redis.call('DEL', KEYS[1]) return 1 end
return 0
`,
  },
  /**
   * KEYS: a version's slices hash. ARGV: proxy id, slices JSON, ttl ms.
   * Stamped with the Redis clock, so proxies' clocks need not agree.
   */
  sluiceSlicesPut: {
    numberOfKeys: 1,
    lua: `
${NOW_MS}redis.call('HSET', KEYS[1], ARGV[1], now .. '|' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`,
  },
  /**
   * KEYS: a version's slices hash. ARGV: ttl ms, a proxy id to leave out ('' for none).
   * Returns the live proxies' JSON, dropping the stale.
   */
  sluiceSlicesGet: {
    numberOfKeys: 1,
    lua: `
${NOW_MS}local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, '|', 1, true)
  if all[i] == ARGV[2] then
    -- the caller has fresher figures of its own
  elseif sep and now - tonumber(string.sub(v, 1, sep - 1)) <= tonumber(ARGV[1]) then
    out[#out + 1] = string.sub(v, sep + 1)
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return out
`,
  },
  /**
   * KEYS: rollouts hash, rollout ids list. ARGV: id, JSON, how many kept,
   * '1' to write only if absent. Upserts by id, newest last, bounded.
   */
  sluiceRolloutPut: {
    numberOfKeys: 2,
    lua: `
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if exists and ARGV[4] == '1' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not exists then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  while redis.call('LLEN', KEYS[2]) > tonumber(ARGV[3]) do
    redis.call('HDEL', KEYS[1], redis.call('LPOP', KEYS[2]))
  end
end
return 1
`,
  },
  /** KEYS: rollouts hash, rollout ids list. ARGV: limit (> 0). The newest `limit` records' JSON, oldest first. */
  sluiceRolloutList: {
    numberOfKeys: 2,
    lua: `
local ids = redis.call('LRANGE', KEYS[2], -tonumber(ARGV[1]), -1)
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[1], unpack(ids))
`,
  },
} as const

type Arg = string | number

/** An ioredis client with the store's scripts defined on it. */
export type ScriptedRedis = Redis & {
  sluiceCas(...args: Arg[]): Promise<[0 | 1, string | null]>
  sluiceLease(...args: Arg[]): Promise<number>
  sluiceRelease(...args: Arg[]): Promise<number>
  sluiceSlicesPut(...args: Arg[]): Promise<number>
  sluiceSlicesGet(...args: Arg[]): Promise<string[]>
  sluiceRolloutPut(...args: Arg[]): Promise<number>
  sluiceRolloutList(...args: Arg[]): Promise<(string | null)[]>
}

export function defineScripts(client: Redis): ScriptedRedis {
  for (const [name, def] of Object.entries(SCRIPTS)) client.defineCommand(name, def)
  return client as ScriptedRedis
}
