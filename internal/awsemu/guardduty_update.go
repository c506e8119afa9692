package awsemu

import "net/http"

// gdUpdateDetector enables or disables a detector and sets how often it
// publishes findings.
func (e *Emulator) gdUpdateDetector(c *call) (any, error) {
	var in struct {
		Enable                     *bool  `json:"enable"`
		FindingPublishingFrequency string `json:"findingPublishingFrequency"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	switch in.FindingPublishingFrequency {
	case "", "FIFTEEN_MINUTES", "ONE_HOUR", "SIX_HOURS":
	default:
		return nil, &apiError{Code: "BadRequestException", Status: http.StatusBadRequest,
			Message: "The request is rejected because an invalid or out-of-range value is specified as an input parameter."}
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	d := c.acct.region(c.region).detector
	if d == nil || d.id != c.path["detectorId"] {
		return nil, &apiError{Code: "BadRequestException", Status: http.StatusBadRequest,
			Message: "The request is rejected because the input detectorId is not owned by the current account."}
	}
	if in.Enable != nil {
		d.status = "DISABLED"
		if *in.Enable {
			d.status = "ENABLED"
		}
	}
	if in.FindingPublishingFrequency != "" {
		d.frequency = in.FindingPublishingFrequency
	}
	d.updated = c.now
	return map[string]any{}, nil
}
