-- Oracle commands for prosody_store.json and prosody_store.stanza: what
-- Prosody's util.json, util.stanza and util.xml make of a value or text.
local json = require "util.json"
local st = require "util.stanza"
local xml = require "util.xml"
local tagged = require "tagged"

local M = {}

-- tagged JSON value -> util.json.encode of it
function M.encode(payload)
	return json.encode(tagged.decode(payload))
end

-- tagged JSON value -> util.json.encode_ordered of it (members sorted)
function M.encode_ordered(payload)
	return json.encode_ordered(tagged.decode(payload))
end

-- util.json's null sentinel is a table; the Python side reads null as nil.
-- Replace the sentinel by nil everywhere (an entry whose value is null does not
-- exist, whatever its key); any other entry with a sentinel or table key is an
-- error, as the Python data model cannot hold it.
local function strip_null(t)
	for k, v in pairs(t) do
		if v == json.null then
			t[k] = nil
		elseif k == json.null or type(k) == "table" then
			error("table key")
		elseif type(v) == "table" then
			strip_null(v)
		end
	end
end

-- JSON text -> tagged JSON of what util.json.decode returns (null as nil)
function M.decode(payload)
	local value, err = json.decode(payload)
	if value == nil then error("decode: " .. tostring(err)) end
	if value == json.null then return tagged.encode(nil) end
	if type(value) == "table" then strip_null(value) end
	return tagged.encode(value)
end

-- tagged JSON of a preserialized stanza -> tostring(util.stanza.deserialize(t))
function M.stanza_tostring(payload)
	return tostring(st.deserialize(tagged.decode(payload)))
end

-- Adjacent text nodes merged (util.xml keeps expat's chunks; stored stanzas,
-- read by util.xmppstream, have them concatenated).
local function merge_text(t)
	local out = { name = t.name, attr = t.attr }
	for _, child in ipairs(t) do
		if type(child) == "table" then
			out[#out + 1] = merge_text(child)
		elseif type(out[#out]) == "string" then
			out[#out] = out[#out] .. child
		else
			out[#out + 1] = child
		end
	end
	return out
end

-- XML text -> tagged JSON of util.xml.parse's stanza, preserialized
function M.xml_parse(payload)
	local stanza, err = xml.parse(payload)
	if not stanza then error("parse: " .. tostring(err)) end
	return tagged.encode(merge_text(st.preserialize(stanza)))
end

return M
