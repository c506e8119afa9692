package cases

import "sync"

// Changes tells watchers in this process that a case changed: a timeline
// entry, a phase, a close or a finding written through this controller's
// case service. It says nothing of a change another controller of a
// cluster wrote, so a watcher also re-reads the case now and then.
// A notice carries no content: the watcher reads the case through the
// case service, with its own authorisation.
type Changes struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

// Subscribe returns a channel that receives a value after each change of
// caseID (changes in a burst may arrive as one), and a function that ends
// the subscription.
func (c *Changes) Subscribe(caseID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	if c.subs == nil {
		c.subs = map[string]map[chan struct{}]struct{}{}
	}
	if c.subs[caseID] == nil {
		c.subs[caseID] = map[chan struct{}]struct{}{}
	}
	c.subs[caseID][ch] = struct{}{}
	c.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			delete(c.subs[caseID], ch)
			if len(c.subs[caseID]) == 0 {
				delete(c.subs, caseID)
			}
		})
	}
}

// notify wakes caseID's subscribers without waiting for any of them.
func (c *Changes) notify(caseID string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for ch := range c.subs[caseID] {
		select {
		case ch <- struct{}{}:
		default: // a notice is pending already
		}
	}
}
