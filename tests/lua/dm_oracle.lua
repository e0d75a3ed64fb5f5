-- Oracle commands for the filesystem store: Prosody's own util.datamanager.
--
-- Every request is a JSON object.  "path" is the data_path.  Names travel as
-- lowercase hex of their bytes ("user", "host", "store"), or JSON null for nil
-- (and "user": true for stores(true, ...)).  Values travel as tagged JSON
-- (see tagged.lua).
local json = require "util.json"
local tagged = require "tagged"

package.loaded["util.logger"] = package.loaded["util.logger"]
	or { init = function() return function() end end }
local dm = require "util.datamanager"

local M = {}

local function unhex(h)
	return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function hex(s)
	return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function name(v)
	if v == nil or v == json.null then return nil end
	if v == true then return true end
	return unhex(v)
end

local function request(payload)
	local req = json.decode(payload)
	dm.set_data_path(req.path)
	return req, name(req.user), name(req.host), name(req.store)
end

-- -> tagged value, or {"nil":true} when there is no data; an error if Prosody reports one
function M.load(payload)
	local _, user, host, store = request(payload)
	local value, err = dm.load(user, host, store)
	if value == nil and err then error(err) end
	return tagged.encode(value)
end

-- -> JSON array of tagged items, or "null" when there is no list
function M.list_load(payload)
	local _, user, host, store = request(payload)
	local items, err = dm.list_load(user, host, store)
	if items == nil then
		if err then error(err) end
		return "null"
	end
	local parts = {}
	for i = 1, #items do parts[i] = tagged.encode(items[i]) end
	return "[" .. table.concat(parts, ",") .. "]"
end

-- {"value": tagged}
function M.store(payload)
	local req, user, host, store = request(payload)
	assert(dm.store(user, host, store, tagged.decode_value(req.value)))
	return "true"
end

-- {"items": [tagged, ...]}
function M.list_append(payload)
	local req, user, host, store = request(payload)
	for _, item in ipairs(req.items) do
		assert(dm.list_append(user, host, store, tagged.decode_value(item)))
	end
	return "true"
end

-- {"items": [tagged, ...]}
function M.list_store(payload)
	local req, user, host, store = request(payload)
	local items = {}
	for i, item in ipairs(req.items) do items[i] = tagged.decode_value(item) end
	assert(dm.list_store(user, host, store, items))
	return "true"
end

local function collect(iter, state, var)
	local out = {}
	for v in iter, state, var do out[#out + 1] = '"' .. hex(v) .. '"' end
	table.sort(out)
	return "[" .. table.concat(out, ",") .. "]"
end

-- {"typ": "keyval"|"list"} -> sorted JSON array of hex names
function M.users(payload)
	local req, _, host, store = request(payload)
	return collect(dm.users(host, store, req.typ))
end

-- {"typ": ...} -> sorted JSON array of hex names
function M.stores(payload)
	local req, user, host = request(payload)
	return collect(dm.stores(user, host, req.typ))
end

-- {"ext": ...} -> the path Prosody uses
function M.getpath(payload)
	local req, user, host, store = request(payload)
	return dm.getpath(user, host, store, req.ext)
end

function M.purge(payload)
	local _, user, host = request(payload)
	assert(dm.purge(user, host))
	return "true"
end

return M
