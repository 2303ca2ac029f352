"""The Lua scripts of wsgateway's Redis layer (wsgateway.layers.redis): its ``connections``
extension, the cap on each user's sockets, kept atomically in Redis for every process of a site."""

from __future__ import annotations

# The connections extension: one sorted set per user, "<prefix>:u:<user>", of its sockets' channel
# names, each scored by the time it expires. The scripts read the time from Redis, not from the
# process: the processes of a site need not agree on the time, only on Redis. The key itself expires
# with its last entry, so a user who left leaves nothing behind.
NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "


def _join(online: str, since: str, user: str) -> str:
    """Lua that brings ``user`` online in the ``online`` set, and into the ``since`` set when it was not
    there yet; ``new`` is then 1 when this call made the user online. Both the connect's place script
    (the place_presence extension) and PRESENCE_JOIN run it, so the two cannot come to differ."""
    return f"""
local new = redis.call('ZADD', {online}, now, {user})
if new == 1 then
  redis.call('ZADD', {since}, now, {user})
else
  redis.call('ZADD', {since}, 'NX', now, {user})
end"""


# The marker: "<prefix>:e:<loop id>", set by a loop's first place and kept as long as its places. Redis
# loses it with them (FLUSHALL, a restart without persistence): a loop that had set it and finds it
# gone knows its sockets' places are gone too, and must put them back before it gives a new one. The
# other processes' places are gone as well, and each puts back its own when it notices (its watchdog
# asks every second); so the first to notice sets "<prefix>:restoring" for ``restore_grace`` seconds,
# during which no process gives a new place: time for every other one to put back its own.
LOST = """
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2])
  return {-1, redis.call('PTTL', KEYS[2])}
end
"""
#: KEYS: the loop's marker, the site's restoring key, the user's set, the user's cool-down, the online
#: set, the since set; ARGV: "1" if the marker should be there, restore_grace in ms, channel, limit,
#: expiry, "1" to join the user to presence (the place_presence extension), the user. Prune, check and
#: add, atomically: the place a script takes cannot be taken by another connect between its check and
#: its add. {1, 0}: added; {2, 0}: added, and the user came online with it (as PRESENCE_JOIN, below);
#: {0, 0}: over the limit; {-1, ms}: this loop's places are lost; {-2, ms}: places are being put back,
#: ask again in ms; {-3, ms}: the user is cooling down (the cooldown extension: a key that expires by
#: itself) for ms more. Nothing is added or joined but for {1, 0} and {2, 0}.
CONNECTION_ADD = (
    NOW
    + LOST
    + """
local cooling = redis.call('PTTL', KEYS[4])
if cooling > 0 then
  return {-3, cooling}
end
local settling = redis.call('PTTL', KEYS[2])
if settling > 0 then
  return {-2, settling}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if not redis.call('ZSCORE', KEYS[3], ARGV[3]) and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then
  return {0, 0}
end
local ms = math.ceil(tonumber(ARGV[5]) * 1000)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[3])
redis.call('PEXPIRE', KEYS[3], ms)
redis.call('SET', KEYS[1], '1', 'PX', ms)
if ARGV[6] == '1' then
"""
    + _join("KEYS[5]", "KEYS[6]", "ARGV[7]")
    + """
  return {1 + new, 0}
end
return {1, 0}
"""
)
#: KEYS: the loop's marker, the site's restoring key; ARGV: "1" if the marker should be there,
#: restore_grace in ms. {-1, ms} as for CONNECTION_ADD, else {1, 0}.
CONNECTION_CHECK = LOST + "return {1, 0}"
#: KEYS: the loop's marker, then users' sets; ARGV: expiry, "1" to set the marker, then one channel per
#: user's set. Adds back what is missing (Redis lost it), past the limit if need be: the sockets are
#: open, and the cap is for new ones. A renewal extends the marker only if it is there: it renews
#: one batch of the loop's places, and a marker set then would vouch for the batches not yet back.
#: A restore (every place of the loop, in one call) sets it.
CONNECTION_RENEW = (
    NOW
    + """
local expiry = tonumber(ARGV[1])
local ms = math.ceil(expiry * 1000)
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now + expiry, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], ms)
end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
else
  redis.call('PEXPIRE', KEYS[1], ms)
end
return #KEYS - 1
"""
)
#: KEYS: the user's set.
CONNECTIONS = (
    NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
)

# The presence extension: one sorted set per site, "<prefix>:online", of the users who are online (from
# their user_online signal until their user_offline one), each scored by the time they were last seen
# with a socket. A user's own set of sockets (above) says whether they have one now; this set remembers
# them for PRESENCE_GRACE after their last one went, so that a reload does not take them offline.
# Beside it, "<prefix>:since" holds the same users scored by when they came online: written when a
# call brings a user online, taken out with them, so that the admin can page through it in that order.
# A user online with no "since" (online before this set existed) gets one at their next join or renewal.
#: KEYS: the online set, the since set; ARGV: the user. 1 when the user was not online (this call made
#: them so).
PRESENCE_JOIN = NOW + _join("KEYS[1]", "KEYS[2]", "ARGV[1]") + "\nreturn new\n"
#: KEYS: the online set, the since set; ARGV: users with a socket open on the caller's process. Each is
#: seen now; those the set had lost (Redis lost its data, or a stall let their sockets' registrations
#: lapse and a sweep took them out) are put back, online since now, and returned: they are online again.
PRESENCE_RENEW = (
    NOW
    + """
local back = {}
for i = 1, #ARGV do
  if redis.call('ZADD', KEYS[1], now, ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], now, ARGV[i])
    back[#back + 1] = ARGV[i]
  else
    redis.call('ZADD', KEYS[2], 'NX', now, ARGV[i])
  end
end
return back
"""
)
#: KEYS: the online set; ARGV: the user. Their socket left: seen now, if online.
PRESENCE_LEAVE = NOW + "return redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])"
#: KEYS: the online set, the since set, then users' sets of sockets; ARGV: the grace in seconds, then
#: one user per set.
#: A user with a socket (expired ones pruned) is seen now; one without any, last seen at least the grace
#: ago, is taken out of the set and returned: the one call that takes them out, on any process, is the
#: one whose process sends user_offline. Atomic, so two processes never both take out the same user.
PRESENCE_SWEEP = (
    NOW
    + """
local cutoff = now - tonumber(ARGV[1])
local gone = {}
for i = 3, #KEYS do
  local user = ARGV[i - 1]
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) > 0 then
    redis.call('ZADD', KEYS[1], 'XX', now, user)
  else
    local seen = redis.call('ZSCORE', KEYS[1], user)
    if seen and tonumber(seen) <= cutoff then
      redis.call('ZREM', KEYS[1], user)
      redis.call('ZREM', KEYS[2], user)
      gone[#gone + 1] = user
    end
  end
end
return gone
"""
)
#: KEYS: users' sets of sockets. How many sockets each has open now, on every process (expired ones
#: left out, not pruned: a read), in one round trip for a page of users.
PRESENCE_SOCKETS = (
    NOW
    + """
local counts = {}
for i = 1, #KEYS do
  counts[i] = redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf')
end
return counts
"""
)

# The status extension (wsgateway.status): each server process's snapshot in a key of its own,
# "<prefix>:st:<process>", that expires by itself, and an index of the processes, "<prefix>:st", a sorted
# set scored by when each one's snapshot expires (Redis's clock). The index is what a reader walks: a
# SCAN for the snapshots' keys would walk every key of the database (every user's set of sockets) to find
# a few processes.
#: KEYS: the index, the process's key; ARGV: the process, the snapshot, its life in ms. The index drops
#: the processes whose snapshots have expired, and lives as long as the longest-lived snapshot in it.
STATUS_PUBLISH = (
    NOW
    + """
local ms = tonumber(ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ms)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ms / 1000, ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) * 1000) + 1000)
return 1
"""
)
#: KEYS: the index; ARGV: the most processes to return. The processes whose snapshots have not expired.
STATUS_LIVE = (
    NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'LIMIT', 0, tonumber(ARGV[1]))
"""
)
