-- wrk script for the reload-under-load rows: each wrk thread writes, per millisecond
-- of CLOCK_MONOTONIC (the clock of Python's time.monotonic()), how many 2xx responses
-- completed in it: "<ms> <count>" lines in $RELOAD_LOG_DIR/thread-<n>.log. bench.py
-- merges the threads' files to find the longest interval without a response.
local ffi = require("ffi")
ffi.cdef [[
typedef long rsgi_time_t;
struct rsgi_timespec { rsgi_time_t tv_sec; long tv_nsec; };
int clock_gettime(int clk_id, struct rsgi_timespec *tp);
]]
local ts = ffi.new("struct rsgi_timespec")
local CLOCK_MONOTONIC = 1

local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + math.floor(tonumber(ts.tv_nsec) / 1000000)
end

local counter = 0

function setup(thread)
    thread:set("id", counter)
    counter = counter + 1
end

function init(args)
    out = io.open(os.getenv("RELOAD_LOG_DIR") .. "/thread-" .. id .. ".log", "w")
    out:setvbuf("line")
    cur = -1
    n = 0
end

function response(status, headers, body)
    if status >= 200 and status < 300 then
        local ms = now_ms()
        if ms ~= cur then
            if n > 0 then
                out:write(cur, " ", n, "\n")
            end
            cur = ms
            n = 0
        end
        n = n + 1
    end
end
