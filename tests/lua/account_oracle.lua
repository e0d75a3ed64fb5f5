-- Oracle commands for accounts in a real data directory: Prosody's own auth
-- and authz modules, loaded with a stub `module` whose stores are Prosody's
-- util.datamanager on that directory (as mod_storage_internal's keyval store).
--
-- Every request is JSON: "path" (the data_path), "host", "user" and
-- "password" as lowercase hex of their bytes, "module" (for example
-- "mod_auth_internal_hashed") and "options" (the module's config options).
local json = require "util.json"
local hex = require "util.hex"

package.loaded["util.logger"] = package.loaded["util.logger"]
	or { init = function() return function() end end }
local dm = require "util.datamanager"
local set = require "util.set"

local M = {}

local function keyval_store(host, name)
	return {
		get = function(_, user) return dm.load(user, host, name) end;
		set = function(_, user, data) return dm.store(user, host, name, data) end;
		users = function() return dm.users(host, name) end;
	}
end

-- Run one of Prosody's modules with a stub `module` for `host`; returns the
-- module's environment (its globals) and the provider it registered, if any.
local function load_module(module_name, host, options)
	local provided
	local fake = {
		host = host;
		_log = function() end;
		open_store = function(_, name) return keyval_store(host, name) end;
		get_option_string = function(_, name, default) return options[name] or default end;
		get_option_number = function(_, name, default) return options[name] or default end;
		get_option_inherited_set = function(_, name, default)
			return set.new(options[name] or default)
		end;
		provides = function(_, _, provider) provided = provider end;
	}
	package.loaded["core.usermanager"] = package.loaded["core.usermanager"] or {}
	local env = setmetatable({ module = fake }, { __index = _G })
	local chunk = assert(loadfile("/usr/lib/prosody/modules/" .. module_name .. ".lua", "t", env))
	chunk()
	return env, provided
end

local function request(payload)
	local req = json.decode(payload)
	dm.set_data_path(req.path)
	local options = req.options ~= json.null and req.options or {}
	return req, hex.decode(req.host), options
end

-- -> "true" or "false": provider.test_password(user, password) of the auth module.
function M.test_password(payload)
	local req, host, options = request(payload)
	local _, provider = load_module(req.module, host, options)
	local ok, result = pcall(provider.test_password, hex.decode(req.user), hex.decode(req.password))
	return (ok and result) and "true" or "false"
end

-- -> "true" or "false": provider.user_exists(user) of the auth module.
function M.user_exists(payload)
	local req, host, options = request(payload)
	local _, provider = load_module(req.module, host, options)
	return provider.user_exists(hex.decode(req.user)) and "true" or "false"
end

-- -> "true": provider.create_user(user, password), writing into the data directory.
function M.create_user(payload)
	local req, host, options = request(payload)
	local _, provider = load_module(req.module, host, options)
	assert(provider.create_user(hex.decode(req.user), hex.decode(req.password)))
	return "true"
end

-- -> JSON array of role names (sorted) from mod_authz_internal's
-- get_user_roles(user) (Prosody 0.12), or "null" when it returns none.
function M.get_user_roles(payload)
	local req, host, options = request(payload)
	local env = load_module("mod_authz_internal", host, options)
	local roles = env.get_user_roles(hex.decode(req.user))
	if roles == nil then return "null" end
	local names = {}
	for name, value in pairs(roles) do
		if value then names[#names + 1] = name end
	end
	table.sort(names)
	return json.encode(setmetatable(names, json.array_mt))
end

return M
