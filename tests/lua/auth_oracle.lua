-- Oracle commands for stringprep, JIDs and password verification.
--
-- Strings travel as lowercase hex so that any byte string passes unchanged.
-- A nil result (Prosody's way of saying "invalid") travels as "-".
local encodings = require "util.encodings"
local jid = require "util.jid"
local json = require "util.json"
local hex = require "util.hex"
local hashes = require "util.hashes"

local stringprep = encodings.stringprep

local M = {}

local function hex_or_dash(s)
	if s == nil then return "-" end
	return hex.encode(s)
end

-- Apply fn to every line of payload (hex strings), answer one line each.
local function map_lines(payload, fn)
	local out = {}
	for line in payload:gmatch("[^\n]+") do
		out[#out + 1] = hex_or_dash(fn(hex.decode(line == "=" and "" or line)))
	end
	return table.concat(out, "\n")
end

-- "<profile>[ strict]\n<hex>\n<hex>..." -> one line per input: hex result or "-".
-- "=" stands for the empty string (an empty line would be ambiguous).
function M.prep(payload)
	local head, rest = payload:match("^([^\n]*)\n?(.*)$")
	local profile, strict = head:match("^(%w+)%s*(%w*)$")
	local f = assert(stringprep[profile], "no such profile")
	local flag = nil
	if strict == "strict" then flag = true end
	return map_lines(rest, function(s) return (f(s, flag)) end)
end

-- "<hex jid>\n..." -> util.jid.prep of each, hex or "-".
function M.jid_prep(payload)
	return map_lines(payload, function(s) return (jid.prep(s)) end)
end

-- "<hex jid>\n..." -> util.jid.split of each as a JSON array [node, host, resource]
-- (hex strings or null); a JID that does not split is [null, null, null].
function M.jid_split(payload)
	local out = {}
	for line in payload:gmatch("[^\n]+") do
		local node, host, resource = jid.split(hex.decode(line == "=" and "" or line))
		local function j(x) return x and ('"' .. hex.encode(x) .. '"') or "null" end
		out[#out + 1] = "[" .. j(node) .. "," .. j(host) .. "," .. j(resource) .. "]"
	end
	return table.concat(out, "\n")
end

local function scram_hasher(name)
	local scram = require "util.sasl.scram"
	if name == "SHA-1" then
		return scram.getAuthenticationDatabaseSHA1
	end
	local low = name:lower():gsub("%-", "")
	return scram.get_hash(hashes[low], hashes["hmac_" .. low], hashes["pbkdf2_hmac_" .. low])
end

-- JSON {hash="SHA-1"|"SHA-256", password=<hex>, salt=<hex>, iteration_count=N}
-- -> JSON {valid=bool, stored_key=<hex>, server_key=<hex>} from util.sasl.scram.
function M.scram(payload)
	local req = json.decode(payload)
	local get_auth_db = scram_hasher(req.hash or "SHA-1")
	local valid, stored_key, server_key = get_auth_db(hex.decode(req.password),
		hex.decode(req.salt), math.tointeger(req.iteration_count))
	if not valid then
		return json.encode({ valid = false, error = tostring(stored_key) })
	end
	return json.encode({ valid = true, stored_key = hex.encode(stored_key),
		server_key = hex.encode(server_key) })
end

-- Load one of Prosody's auth modules with a stub `module` whose accounts
-- store holds exactly one record; return its provider.
local function load_provider(module_name, record, options)
	local stored = record
	local store = {
		get = function(_, _) return stored end;
		set = function(_, _, data) stored = data; return true end;
	}
	local provided
	local fake = {
		host = "example.com";
		_log = function() end;
		open_store = function() return store end;
		get_option_string = function(_, name, default) return options[name] or default end;
		get_option_number = function(_, name, default) return options[name] or default end;
		provides = function(_, _, provider) provided = provider end;
	}
	package.loaded["core.usermanager"] = package.loaded["core.usermanager"] or {}
	local env = setmetatable({ module = fake }, { __index = _G })
	local path = "/usr/lib/prosody/modules/" .. module_name .. ".lua"
	local chunk = assert(loadfile(path, "t", env))
	chunk()
	return assert(provided, "module did not provide an auth provider")
end

local function untag_record(t)
	local record = {}
	for k, v in pairs(t) do
		if type(v) == "table" and v.hex then
			record[k] = hex.decode(v.hex)
		elseif type(v) == "table" and v.int then
			record[k] = math.tointeger(tonumber(v.int))
		else
			record[k] = v
		end
	end
	return record
end

-- JSON {module="mod_auth_internal_hashed"|"mod_auth_internal_plain",
--       record={field = {hex=...} | {int="N"} | true/false | null},
--       password=<hex>, options={...}}
-- -> "true" or "false": the module's own provider.test_password verdict.
function M.test_password(payload)
	local req = json.decode(payload)
	local record = req.record ~= json.null and untag_record(req.record) or nil
	local provider = load_provider(req.module, record, req.options or {})
	local ok, result = pcall(provider.test_password, "user", hex.decode(req.password))
	if not ok then return "error" end
	return result and "true" or "false"
end

return M
