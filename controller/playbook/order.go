package playbook

// Order returns the steps in topological layers: the first layer holds the
// steps that need nothing, and each later layer the steps whose needs all lie
// in earlier layers. Steps keep file order within a layer. Order expects a
// validated playbook; steps on a cycle or needing an unknown step are left
// out.
func (pb *Playbook) Order() [][]*Step {
	ids := make(map[string]*Step, len(pb.Steps))
	for _, s := range pb.Steps {
		if _, dup := ids[s.ID]; !dup {
			ids[s.ID] = s
		}
	}
	layer := make(map[string]int, len(pb.Steps))
	placed := 0
	var layers [][]*Step
	for {
		var next []*Step
		for _, s := range pb.Steps {
			if _, done := layer[s.ID]; done || ids[s.ID] != s {
				continue
			}
			ready := true
			for _, n := range s.Needs {
				if _, ok := layer[n]; !ok {
					ready = false
					break
				}
			}
			if ready {
				next = append(next, s)
			}
		}
		if len(next) == 0 {
			return layers
		}
		for _, s := range next {
			layer[s.ID] = len(layers)
		}
		placed += len(next)
		layers = append(layers, next)
		if placed == len(ids) {
			return layers
		}
	}
}
