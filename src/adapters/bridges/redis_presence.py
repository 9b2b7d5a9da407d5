"""Bridge limits and presence in Redis: the rate-limit windows and the two-terminals rule
(`domain.bridge_presence.observe`, here in Lua) in one script, so a heartbeat costs one round
trip and the rule sees every worker's calls. The presence is a small hash per bridge that dies
a few intervals after the bridge goes quiet."""

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

from adapters.limiter.redis_sliding_window import WINDOWS_LUA, decisions_of, window_args, window_key
from adapters.redis_pipelined import PipelinedRedis, PipelinedScript
from application.ports.bridge_presence import PresenceVerdict, Sighting
from application.ports.rate_limiter import RateLimit
from domain.bridge_presence import CLOCK_TOLERANCE_MS, FLIPS_TO_FLAG, SecondTerminal

# KEYS: the windows, then the presence hash. ARGV after the windows' part: ip, now (µs), interval
# (µs), sent (ms or ''), figure (or ''), ttl (ms). Mirrors `observe` line for line; a missing
# field is Lua's false where Python has None.
_PRESENCE_LUA = f"""
local admitted = true
for i = 1, n do
  if out[3 * i - 2] == 0 then admitted = false end
end
local flag, previous_ip = '', ''
if admitted then
  local b = 2 * n + 1
  local ip, now_us, interval = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local sent, figure, ttl = ARGV[b + 4], ARGV[b + 5], tonumber(ARGV[b + 6])
  local key = KEYS[n + 1]
  local s = redis.call('HMGET', key, 'ip', 'seen', 'sent', 'fig', 'prev', 'flips')
  if s[1] then
    previous_ip = s[1]
    if s[1] ~= ip and now_us - tonumber(s[2]) < interval then
      flag = '{SecondTerminal.SECOND_ADDRESS}'
    elseif sent ~= '' and s[3] and tonumber(sent) < tonumber(s[3]) - {CLOCK_TOLERANCE_MS} then
      flag = '{SecondTerminal.INTERLEAVED_CLOCK}'
    end
  end
  local last, previous, flips = s[4], s[5], tonumber(s[6] or '0')
  if figure ~= '' then
    if last and previous and figure == previous and figure ~= last then
      flips = flips + 1
    else
      flips = 0
    end
    previous = last
    last = figure
    if flag == '' and flips >= {FLIPS_TO_FLAG} then flag = '{SecondTerminal.INTERLEAVED_FIGURES}' end
  end
  local fields = {{'ip', ip, 'seen', ARGV[b + 2], 'flips', tostring(flips)}}
  if sent ~= '' then fields[#fields + 1] = 'sent'; fields[#fields + 1] = sent end
  if last then fields[#fields + 1] = 'fig'; fields[#fields + 1] = last end
  if previous then fields[#fields + 1] = 'prev'; fields[#fields + 1] = previous end
  redis.call('HSET', key, unpack(fields))
  redis.call('PEXPIRE', key, ttl)
end
out[#out + 1] = flag
out[#out + 1] = previous_ip
return out
"""
_SCRIPT = "local n = #KEYS - 1\n" + WINDOWS_LUA + _PRESENCE_LUA


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


class RedisBridgePresence:
    """`BridgePresence` on Redis. Windows share the limiter's keys (`{namespace}:rl:...`);
    presence hashes are `{namespace}:bridge-presence:{bridge id}`."""

    def __init__(self, redis: PipelinedRedis, namespace: str) -> None:
        self._namespace = namespace
        self._script = PipelinedScript(redis, _SCRIPT)

    async def admit(
        self,
        bridge_id: UUID,
        sighting: Sighting,
        windows: Sequence[tuple[str, RateLimit]],
        interval: timedelta,
    ) -> PresenceVerdict:
        if len({key for key, _ in windows}) != len(windows):
            raise ValueError("admit needs distinct window keys")
        keys = [window_key(self._namespace, key) for key, _ in windows]
        keys.append(f"{self._namespace}:bridge-presence:{bridge_id}")
        sent: str | int = "" if sighting.sent_at is None else round(sighting.sent_at.timestamp() * 1000)
        args = window_args([limit for _, limit in windows])
        args += [
            sighting.ip,
            _us(sighting.at.timestamp()),
            _us(interval.total_seconds()),
            sent,
            sighting.figure or "",
            max(60_000, round(interval.total_seconds() * 4000)),  # the presence's expiry, ms
        ]
        flat = await self._script(keys, args)
        flag, previous_ip = _text(flat[-2]), _text(flat[-1])
        return PresenceVerdict(
            decisions=decisions_of(flat[:-2]),  # integer replies
            second_terminal=SecondTerminal(flag) if flag else None,
            previous_ip=previous_ip or None,
        )
