-- Oracle commands for the serialization codec.
local serialization = require "util.serialization"
local envload = require "util.envload".envload
local tagged = require "tagged"

local M = {}

-- tagged JSON value -> Prosody's default serialization of it
function M.serialize(payload)
	return serialization.serialize(tagged.decode(payload))
end

-- tagged JSON value -> the bytes of a .dat file as Prosody's datamanager writes it
function M.dat(payload)
	return "return " .. serialization.serialize(tagged.decode(payload)) .. ";\n"
end

-- tagged JSON array of values -> the bytes of a .list file
function M.list(payload)
	local out = {}
	for _, item in ipairs(require "util.json".decode(payload)) do
		out[#out + 1] = "item(" .. serialization.serialize(tagged.decode_value(item)) .. ");\n"
	end
	return table.concat(out)
end

-- Lua source of one value (as in a .dat, with or without "return") -> tagged
-- JSON of what Lua reads, loaded the way Prosody loads a .dat: empty environment.
function M.load_dat(payload)
	local src = payload
	if not src:match("^%s*return[^%w_]") then src = "return " .. src end
	local f = assert(envload(src, "=data", {}))
	return tagged.encode(f())
end

-- bytes of a .list file -> tagged JSON array of its items
function M.load_list(payload)
	local items = {}
	local f = assert(envload(payload, "=list", { item = function(i) items[#items + 1] = i end }))
	f()
	local parts = {}
	for i = 1, #items do parts[i] = tagged.encode(items[i]) end
	return "[" .. table.concat(parts, ",") .. "]"
end

return M
