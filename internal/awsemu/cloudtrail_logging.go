package awsemu

import "strings"

// ctSetLogging is StartLogging and StopLogging: only the trail's own
// account may turn its logging on or off; a member account that names the
// organisation trail is refused as CloudTrail refuses it.
func (e *Emulator) ctSetLogging(c *call, on bool) (any, error) {
	var in struct {
		Name string `json:"Name"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	if in.Name == "" {
		return nil, ctError("InvalidTrailNameException", "Trail name or ARN can only contain uppercase letters, lowercase letters, numbers, periods (.), hyphens (-), and underscores (_).")
	}
	c.acct.mu.Lock()
	for _, t := range c.acct.trails {
		if t.name != in.Name && t.arn != in.Name {
			continue
		}
		if on && !t.logging {
			t.started = c.now
		}
		t.logging = on
		c.acct.mu.Unlock()
		c.trail.resources = append(c.trail.resources, trailResource{"AWS::CloudTrail::Trail", t.arn})
		return map[string]any{}, nil
	}
	c.acct.mu.Unlock()
	for _, t := range e.visibleTrails(c, true) {
		if t.organization && (t.name == in.Name || t.arn == in.Name) && !strings.Contains(t.arn, ":"+c.acct.id+":") {
			return nil, ctError("NotOrganizationMasterAccountException",
				"This operation can be performed only by the management account of the organization, on an organization trail.")
		}
	}
	return nil, ctError("TrailNotFoundException", "Unknown trail: "+in.Name+" for the user: "+c.acct.id)
}

func (e *Emulator) ctStartLogging(c *call) (any, error) { return e.ctSetLogging(c, true) }

func (e *Emulator) ctStopLogging(c *call) (any, error) { return e.ctSetLogging(c, false) }
