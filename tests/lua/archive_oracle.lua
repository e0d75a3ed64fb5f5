-- Oracle commands for message-archive queries: Prosody's own
-- mod_storage_internal (its archive:find), loaded from Prosody's modules
-- directory with a stub module environment, on Prosody's util.datamanager.
--
-- Request (JSON): {"path": data_path, "host": host, "user": user,
--   "store": store, "query": {...}} where the query has Prosody's fields:
--   "start", "end" (numbers), "limit" (integer), "reverse", "total"
--   (booleans) and "with", "after", "before" as lowercase hex of the string's
--   bytes.  Absent fields are nil.
-- Answer (JSON): {"keys": [hex, ...], "count": n or null}, or
--   {"error": "<Prosody's error>"} when find returns nil, err.
-- parse_stamp: Prosody's util.datetime.parse, which reads items' attr.stamp.
local json = require "util.json"

package.loaded["util.logger"] = package.loaded["util.logger"]
	or { init = function() return function() end end }
local dm = require "util.datamanager"

local modules_dir = package.searchpath("util.datamanager", package.path)
	:gsub("util/datamanager%.lua$", "modules/")

local M = {}

local function unhex(h)
	return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function hex(s)
	return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- One storage driver per host: the module reads module.host when loaded.
-- M.storage(host) is that driver, for scripts that run Prosody's archive
-- store themselves (tests/test_archive_expire.py, bench/expire.py).
local drivers = {}
local function driver(host)
	if drivers[host] then return drivers[host] end
	local provided
	local stub = { host = host }
	function stub:get_option_number(_, default) return default end
	function stub:get_option(_, default) return default end
	function stub:log() end
	function stub:provides(_, d) provided = d end
	local env = setmetatable({
		module = stub,
		require = function(name)
			if name == "core.storagemanager" then return { olddm = dm } end
			return require(name)
		end,
	}, { __index = _G })
	assert(loadfile(modules_dir .. "mod_storage_internal.lua", "t", env))()
	drivers[host] = assert(provided, "mod_storage_internal provided no driver")
	return provided
end
M.storage = driver

local function field(v)
	if v == nil or v == json.null then return nil end
	return v
end

function M.find(payload)
	local req = json.decode(payload)
	dm.set_data_path(req.path)
	local q = req.query
	local query = {
		start = field(q.start), ["end"] = field(q["end"]),
		limit = field(q.limit), reverse = field(q.reverse), total = field(q.total),
	}
	for _, name in ipairs({ "with", "after", "before" }) do
		if field(q[name]) then query[name] = unhex(q[name]) end
	end
	local archive = driver(req.host):open(req.store, "archive")
	local iter, count = archive:find(req.user, query)
	if not iter then
		return json.encode({ error = tostring(count) })
	end
	local keys = {}
	for key in iter do keys[#keys + 1] = '"' .. hex(tostring(key)) .. '"' end
	return '{"keys":[' .. table.concat(keys, ",") .. '],"count":'
		.. (count and string.format("%d", count) or "null") .. "}"
end

-- util.datetime.parse of the payload: the integer it returns, or "nil".
function M.parse_stamp(payload)
	local t = require "util.datetime".parse(payload)
	if t == nil then return "nil" end
	return string.format("%d", t)
end

return M
