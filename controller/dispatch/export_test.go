package dispatch

// WatchBuffers reports what a subscription holds: updates queued for it,
// the capacity of its channel, and the bound of its queue.
func WatchBuffers(s *Subscription) (queued, chanCap, queueBound int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue), cap(s.c), watchQueue
}
