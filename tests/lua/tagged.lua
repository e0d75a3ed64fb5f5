-- Tagged JSON: every Lua value as a JSON object with one key, the format of
-- the corpus' *.expected.json, except that strings travel as {"raw": "<hex>"}
-- so that any byte string passes unchanged.  Tables are {"table": [[k, v], ...]}.
local json = require "util.json"

local M = {}

local function hex(s)
	return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function unhex(h)
	return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function number_text(n)
	if n ~= n then return "nan" end
	if n == math.huge then return "inf" end
	if n == -math.huge then return "-inf" end
	return string.format("%.17g", n)
end

function M.encode(v)
	local t = type(v)
	if t == "nil" then return '{"nil":true}'
	elseif t == "boolean" then return '{"bool":' .. tostring(v) .. '}'
	elseif t == "string" then return '{"raw":"' .. hex(v) .. '"}'
	elseif t == "number" then
		if math.type(v) == "integer" then
			return string.format('{"int":"%d"}', v)
		end
		return '{"float":"' .. number_text(v) .. '"}'
	elseif t == "table" then
		local parts = {}
		for k, x in pairs(v) do
			parts[#parts + 1] = "[" .. M.encode(k) .. "," .. M.encode(x) .. "]"
		end
		return '{"table":[' .. table.concat(parts, ",") .. ']}'
	end
	error("cannot tag a " .. t)
end

function M.decode_value(o)
	if o.raw then return unhex(o.raw)
	elseif o.int then return math.tointeger(tonumber(o.int))
	elseif o.float then
		local s = o.float
		if s == "inf" then return math.huge
		elseif s == "-inf" then return -math.huge
		elseif s == "nan" then return 0.0 / 0.0 end
		local n = tonumber(s)
		if math.type(n) == "integer" then n = n + 0.0 end
		return n
	elseif o.bool ~= nil then return o.bool
	elseif o["nil"] then return nil
	elseif o.table then
		local t = {}
		for _, pair in ipairs(o.table) do
			t[M.decode_value(pair[1])] = M.decode_value(pair[2])
		end
		return t
	end
	error("bad tagged value")
end

function M.decode(text)
	return M.decode_value(json.decode(text))
end

return M
