package storeview

import (
	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Controller is a controller's registry entry on the wire.
func Controller(c *store.ControllerInfo) *operatorv1.ControllerInfo {
	return &operatorv1.ControllerInfo{Id: c.ID, Address: c.Address, Agents: uint32(min(max(c.Agents, 0), 1<<32-1)), Leases: c.Leases,
		Version: c.Version, HeartbeatAt: apiview.Timestamp(c.HeartbeatAt), StartedAt: apiview.Timestamp(c.StartedAt)}
}
