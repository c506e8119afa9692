package finding

import (
	"fmt"
	"strings"
)

// parseASFF reads one finding in the AWS Security Finding Format.
func parseASFF(d object, eventRegion string) (*Finding, error) {
	f := &Finding{Source: SourceSecurityHub, Raw: rawOf(d)}
	var err error
	if f.ID, err = d.str("Id", true); err != nil {
		return nil, err
	}
	if _, err := d.str("ProductArn", true); err != nil {
		return nil, err
	}
	if _, err := d.str("GeneratorId", true); err != nil {
		return nil, err
	}
	if f.Account, err = d.account("AwsAccountId", true); err != nil {
		return nil, err
	}
	if f.Types, err = d.strings("Types"); err != nil {
		return nil, err
	}
	if len(f.Types) == 0 {
		return nil, errorf(d.at("Types"), "missing")
	}
	f.Type = f.Types[0]
	if f.Title, err = d.str("Title", true); err != nil {
		return nil, err
	}
	if f.Description, err = d.str("Description", true); err != nil {
		return nil, err
	}
	created, err := d.time("CreatedAt", true)
	if err != nil {
		return nil, err
	}
	if f.UpdatedAt, err = d.time("UpdatedAt", true); err != nil {
		return nil, err
	}
	if f.FirstSeen, err = d.time("FirstObservedAt", false); err != nil {
		return nil, err
	}
	if f.FirstSeen.IsZero() {
		f.FirstSeen = created
	}
	if _, err := d.time("LastObservedAt", false); err != nil {
		return nil, err
	}
	if err := asffSeverity(d, f); err != nil {
		return nil, err
	}
	if f.Region, err = d.str("Region", false); err != nil {
		return nil, err
	}
	resources, err := d.array("Resources", true)
	if err != nil {
		return nil, err
	}
	if len(resources) == 0 {
		return nil, errorf(d.at("Resources"), "empty")
	}
	f.Tags = map[string]string{}
	for i, v := range resources {
		r, err := asObject(v, fmt.Sprintf("%s[%d]", d.at("Resources"), i))
		if err != nil {
			return nil, err
		}
		if err := asffResource(r, f); err != nil {
			return nil, err
		}
	}
	if f.ResourceKind == "" {
		f.ResourceKind = ResourceOther
	}
	if f.Region == "" {
		f.Region = eventRegion
	}
	if !regionRe.MatchString(f.Region) {
		return nil, errorf(d.at("Region"), "%q is not an AWS region name", f.Region)
	}
	return f, nil
}

func asffSeverity(d object, f *Finding) error {
	sev, _, err := d.obj("Severity", true)
	if err != nil {
		return err
	}
	label, err := sev.str("Label", false)
	if err != nil {
		return err
	}
	if label != "" {
		if _, known := severityOfLabel[label]; !known {
			return errorf(sev.at("Label"), "%q is not INFORMATIONAL, LOW, MEDIUM, HIGH or CRITICAL", label)
		}
	}
	norm, hasNorm, err := sev.num("Normalized", false)
	if err != nil {
		return err
	}
	switch {
	case hasNorm:
		if norm < 0 || norm > 100 {
			return errorf(sev.at("Normalized"), "%g is outside 0–100", norm)
		}
		f.Severity = norm / 10
		f.SeverityLabel = label
		if label == "" {
			f.SeverityLabel = labelFor(f.Severity)
		}
	case label != "":
		f.Severity, f.SeverityLabel = severityOfLabel[label], label
	default:
		return errorf(sev.at("Label"), "missing; Severity needs Label or Normalized")
	}
	return nil
}

func asffResource(r object, f *Finding) error {
	typ, err := r.str("Type", true)
	if err != nil {
		return err
	}
	id, err := r.str("Id", true)
	if err != nil {
		return err
	}
	region, err := r.str("Region", false)
	if err != nil {
		return err
	}
	if f.Region == "" && region != "" {
		f.Region = region
	}
	if tags, ok, err := r.obj("Tags", false); err != nil {
		return err
	} else if ok {
		for k := range tags.m {
			v, err := tags.str(k, false)
			if err != nil {
				return err
			}
			f.Tags[k] = v
		}
	}
	details, _, err := r.obj("Details", false)
	if err != nil {
		return err
	}
	detail := func(key string) (object, error) {
		if details.m == nil {
			return object{path: r.at("Details." + key), m: map[string]any{}}, nil
		}
		o, ok, err := details.obj(key, false)
		if !ok && err == nil {
			o = object{path: details.at(key), m: map[string]any{}}
		}
		return o, err
	}
	kind := ResourceOther
	switch typ {
	case "AwsEc2Instance":
		kind = ResourceInstance
		if f.InstanceID == "" {
			f.InstanceID = lastSegment(id, "/")
			if !strings.HasPrefix(f.InstanceID, "i-") {
				return errorf(r.at("Id"), "%q does not name an EC2 instance", id)
			}
		}
	case "AwsIamAccessKey":
		kind = ResourceAccessKey
		d, err := detail("AwsIamAccessKey")
		if err != nil {
			return err
		}
		keyID, err := d.str("AccessKeyId", false)
		if err != nil {
			return err
		}
		if keyID == "" {
			keyID = lastSegment(id, ":")
		}
		principal, err := d.str("PrincipalName", false)
		if err != nil {
			return err
		}
		principalType, err := d.str("PrincipalType", false)
		if err != nil {
			return err
		}
		user, err := d.str("UserName", false)
		if err != nil {
			return err
		}
		if f.AccessKeyID == "" {
			f.AccessKeyID = keyID
		}
		switch {
		case principalType == "AssumedRole" || principalType == "Role":
			f.RoleName = firstNonEmpty(f.RoleName, principal)
		default:
			f.UserName = firstNonEmpty(f.UserName, principal, user)
		}
	case "AwsS3Bucket":
		kind = ResourceS3Bucket
		if f.Bucket == "" {
			f.Bucket = lastSegment(id, ":::")
		}
	case "AwsIamRole":
		kind = ResourceIAMRole
		d, err := detail("AwsIamRole")
		if err != nil {
			return err
		}
		name, err := d.str("RoleName", false)
		if err != nil {
			return err
		}
		f.RoleName = firstNonEmpty(f.RoleName, name, lastSegment(id, "/"))
	case "AwsIamUser":
		kind = ResourceIAMUser
		d, err := detail("AwsIamUser")
		if err != nil {
			return err
		}
		name, err := d.str("UserName", false)
		if err != nil {
			return err
		}
		f.UserName = firstNonEmpty(f.UserName, name, lastSegment(id, "/"))
	case "AwsLambdaFunction":
		kind = ResourceLambda
		d, err := detail("AwsLambdaFunction")
		if err != nil {
			return err
		}
		name, err := d.str("FunctionName", false)
		if err != nil {
			return err
		}
		f.FunctionName = firstNonEmpty(f.FunctionName, name, lastSegment(id, ":"))
	}
	if f.ResourceKind == "" || (f.ResourceKind == ResourceOther && kind != ResourceOther) {
		f.ResourceKind, f.ResourceType = kind, typ
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
