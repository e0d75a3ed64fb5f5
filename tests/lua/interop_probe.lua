-- Extra oracle commands for tests/test_serialization_interop.py.
--
-- Unlike codec_oracle.load_dat, these never raise: they report whether Lua
-- rejects a chunk while compiling it, fails while running it, or returns a
-- value, so a test can tell "Lua rejects this" from "Lua needs to run code".
local envload = require "util.envload".envload
local tagged = require "tagged"

local M = {}

local function verdict(f, err)
	if not f then return "syntax\n" .. tostring(err) end
	local ok, res = pcall(f)
	if not ok then return "runtime\n" .. tostring(res) end
	return "ok\n" .. res
end

-- Lua source of one value (as in a .dat, with or without "return") ->
-- "syntax\n<message>", "runtime\n<message>" or "ok\n<tagged JSON>",
-- loading it the way Prosody loads a .dat (empty environment).
function M.dat_verdict(payload)
	local src = payload
	if not src:match("^%s*return[^%w_]") then src = "return " .. src end
	local f, err = envload(src, "=data", {})
	return verdict(f and function() return tagged.encode(f()) end, err)
end

-- bytes of a .list file -> the same three outcomes; "ok" carries a tagged JSON array.
function M.list_verdict(payload)
	local items = {}
	local f, err = envload(payload, "=list", { item = function(i) items[#items + 1] = i end })
	return verdict(f and function()
		f()
		local parts = {}
		for i = 1, #items do parts[i] = tagged.encode(items[i]) end
		return "[" .. table.concat(parts, ",") .. "]"
	end, err)
end

-- tagged JSON value -> tagged JSON of the value as a Lua table holds it
-- (float keys with an integral value become integer keys, as in Lua 5.4).
function M.normalize(payload)
	return tagged.encode(tagged.decode(payload))
end

return M
