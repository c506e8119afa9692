package operator

import (
	"context"

	"github.com/firebreak-ir/firebreak/controller/apiview/storeview"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// ListControllers implements operatorv1.OperatorServiceServer: the
// controllers whose registry heartbeat came within ControllersLiveWithin.
func (s *Service) ListControllers(ctx context.Context, _ *operatorv1.ListControllersRequest) (*operatorv1.ListControllersResponse, error) {
	cs, err := s.cfg.Store.ListControllers(ctx, s.cfg.Clock().Add(-s.cfg.ControllersLiveWithin))
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading the controller registry")
	}
	resp := &operatorv1.ListControllersResponse{}
	for _, c := range cs {
		resp.Controllers = append(resp.Controllers, storeview.Controller(c))
	}
	return resp, nil
}
