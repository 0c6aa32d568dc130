-- serve_wrk.lua - wrk script for bench/serve_wrk.sh: each request POSTs the
-- next JSON body from a file of bodies (one per line), cycling, to a route.
--   wrk ... -s bench/serve_wrk.lua URL -- BODIES_FILE [ROUTE]
local bodies = {}
local route = "/embed"
local next_i = 0

function init(args)
  local file = args[1]
  if args[2] then route = args[2] end
  for line in io.lines(file) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  if #bodies == 0 then error("no request bodies in " .. tostring(file)) end
  -- threads start at different offsets so they do not send the same texts in step
  next_i = math.random(#bodies) - 1
end

function request()
  next_i = next_i % #bodies + 1
  return wrk.format("POST", route, {["Content-Type"] = "application/json"}, bodies[next_i])
end
