-- Argo CD health of an Entrepot resource (Connector, Mapping, SyncFlow,
-- ReconcileSchedule), read from its kstatus conditions. Argo CD runs it with
-- `obj` set to the live object; Lua 5.1 (gopher-lua). The same script serves
-- the four kinds: see docs/argocd.md for the argocd-cm keys.

-- Ready=False with one of these reasons will not get better by waiting: the spec
-- or a referenced resource must change. Each is a reason the operator sets
-- (scripts/test_argocd_health.py checks them against the Rust sources).
local terminal = {
  ConnectorNotFound = true,
  MappingNotFound = true,
  InvalidSpec = true,
  MappingTestsFailing = true,
  MappingInvalid = true,
  TargetAuthFailing = true,
  BacklogOverBudget = true,
}

local function condition(status, type_)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function says(c, fallback)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason or fallback
end

local function health(obj)
  local status = obj.status
  local generation = obj.metadata and obj.metadata.generation
  -- observedGeneration is -1 until the operator has looked (the CRD's default).
  local observed = status and status.observedGeneration or -1
  if observed < 0 or (generation ~= nil and observed < generation) then
    return "Progressing", "Waiting for the operator to observe generation " .. tostring(generation or "")
  end
  if obj.spec ~= nil and obj.spec.suspend == true then
    return "Suspended", obj.kind .. " is suspended (spec.suspend)"
  end
  local stalled = condition(status, "Stalled")
  if stalled ~= nil and stalled.status == "True" then
    return "Degraded", says(stalled, "Stalled")
  end
  local ready = condition(status, "Ready")
  if ready ~= nil and ready.status == "False" and terminal[ready.reason] then
    return "Degraded", says(ready, "Not ready")
  end
  local reconciling = condition(status, "Reconciling")
  if reconciling ~= nil and reconciling.status == "True" then
    return "Progressing", says(reconciling, "Reconciling")
  end
  -- A ReconcileSchedule's last run: drift is reported, a run that could not finish is not healthy.
  local last = status and status.lastRun
  if obj.kind == "ReconcileSchedule" and last ~= nil and last.succeeded == false then
    return "Degraded", "Last run " .. tostring(last.job or "") .. " failed: " .. tostring(last.error or "no error reported")
  end
  if ready == nil then
    return "Progressing", "Waiting for the Ready condition"
  end
  if ready.status == "True" then
    return "Healthy", says(ready, "Ready")
  end
  if ready.status == "False" then
    -- Not ready and not being worked on: failing until something outside changes.
    return "Degraded", says(ready, "Not ready")
  end
  return "Progressing", says(ready, "Ready is Unknown")
end

local hs = {}
hs.status, hs.message = health(obj)
return hs
