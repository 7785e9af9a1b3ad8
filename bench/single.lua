-- wrk script: POST one 10 KB message per request to /v1/messages.
-- Usage: wrk -t2 -c32 -d15s -s bench/single.lua http://127.0.0.1:PORT/v1/messages
local body_text = string.rep("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n", 180)
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"from":"Bench <bench@shop.example>","to":"user%d@example.com","subject":"Order %d","text":%q}',
    n, n, body_text)
  body = body:gsub("\\\n", "\\n")
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer ep_benchbenchbenchbenchbenchbench00",
  }, body)
end
