-- Test oracle: a long-running lua5.4 process that answers requests from the
-- Python tests with the results of Prosody's own modules.
--
-- Frame in:  "<module>.<function>\n<byte length>\n<payload bytes>"
-- Frame out: "ok\n<byte length>\n<result bytes>" or "err\n<byte length>\n<message>"
-- The function is looked up as require(module)[function] and called with the
-- payload string; it returns a string.  Modules live in tests/lua/.
local stdin, stdout = io.stdin, io.stdout

local function reply(status, body)
	stdout:write(status, "\n", #body, "\n", body)
	stdout:flush()
end

while true do
	local cmd = stdin:read("l")
	if not cmd then break end
	local len = tonumber(stdin:read("l"))
	local payload = len > 0 and stdin:read(len) or ""
	local mod, fn = cmd:match("^([%w_]+)%.([%w_]+)$")
	local ok, result = pcall(function()
		return require(mod)[fn](payload)
	end)
	if ok and type(result) == "string" then
		reply("ok", result)
	else
		reply("err", tostring(result))
	end
end
