package awsemu

import (
	"maps"
	"net/http"
	"slices"
)

// buildServices registers every emulated service by its signing name.
func (e *Emulator) buildServices() map[string]*service {
	out := map[string]*service{}
	for _, s := range []*service{
		e.ec2Service(), e.iamService(), e.stsService(), e.autoscalingService(), e.elbv2Service(),
		e.organizationsService(), e.accountService(), e.s3Service(), e.lambdaService(), e.cloudtrailService(), e.sqsService(),
		e.guardDutyService(), e.securityHubService(), e.eventsService(),
	} {
		out[s.name] = s
	}
	return out
}

// unknownService answers requests signed for a service the emulator does
// not have, in the query protocol's words.
func (e *Emulator) unknownService(name string) *service {
	s := &service{name: name, eventSource: name + ".amazonaws.com", protocol: protoQuery, errs: queryErrors(), ops: map[string]*operation{}}
	s.router = func(_ *http.Request) (string, map[string]string, *apiError) {
		ae := s.errs.clone(s.errs.unknownOperation)
		ae.Message = "The service " + name + " is not emulated."
		return "", nil, ae
	}
	return s
}

// Operations lists the operations the emulator serves, by signing name.
func (e *Emulator) Operations() map[string][]string {
	out := map[string][]string{}
	for name, s := range e.services {
		out[name] = slices.Sorted(maps.Keys(s.ops))
	}
	return out
}
