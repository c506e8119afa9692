package finding

import (
	"fmt"
	"strings"
)

// parseGuardDuty reads the detail of a "GuardDuty Finding" event.
func parseGuardDuty(d object) (*Finding, error) {
	f := &Finding{Source: SourceGuardDuty, Raw: rawOf(d)}
	var err error
	if f.ID, err = d.str("id", true); err != nil {
		return nil, err
	}
	if f.Type, err = d.str("type", true); err != nil {
		return nil, err
	}
	f.Types = []string{f.Type}
	sev, _, err := d.num("severity", true)
	if err != nil {
		return nil, err
	}
	if sev < 0 || sev > 10 {
		return nil, errorf(d.at("severity"), "%g is outside 0–10", sev)
	}
	f.Severity, f.SeverityLabel = sev, labelFor(sev)
	if f.Account, err = d.account("accountId", true); err != nil {
		return nil, err
	}
	if f.Region, err = d.str("region", true); err != nil {
		return nil, err
	}
	if !regionRe.MatchString(f.Region) {
		return nil, errorf(d.at("region"), "%q is not an AWS region name", f.Region)
	}
	if f.Title, err = d.str("title", false); err != nil {
		return nil, err
	}
	if f.Description, err = d.str("description", false); err != nil {
		return nil, err
	}
	created, err := d.time("createdAt", true)
	if err != nil {
		return nil, err
	}
	if f.UpdatedAt, err = d.time("updatedAt", true); err != nil {
		return nil, err
	}
	f.FirstSeen = created
	if svc, ok, err := d.obj("service", false); err != nil {
		return nil, err
	} else if ok {
		first, err := svc.time("eventFirstSeen", false)
		if err != nil {
			return nil, err
		}
		if !first.IsZero() {
			f.FirstSeen = first
		}
		if _, err := svc.time("eventLastSeen", false); err != nil {
			return nil, err
		}
		if _, _, err := svc.num("count", false); err != nil {
			return nil, err
		}
		if _, _, err := svc.obj("action", false); err != nil {
			return nil, err
		}
	}
	res, _, err := d.obj("resource", true)
	if err != nil {
		return nil, err
	}
	if err := guardDutyResource(res, f); err != nil {
		return nil, err
	}
	return f, nil
}

func guardDutyResource(r object, f *Finding) error {
	var err error
	if f.ResourceType, err = r.str("resourceType", true); err != nil {
		return err
	}
	switch f.ResourceType {
	case "Instance":
		f.ResourceKind = ResourceInstance
	case "AccessKey":
		f.ResourceKind = ResourceAccessKey
	case "S3Bucket", "S3Object":
		f.ResourceKind = ResourceS3Bucket
	case "Lambda":
		f.ResourceKind = ResourceLambda
	default:
		f.ResourceKind = ResourceOther
	}
	f.Tags = map[string]string{}
	if inst, ok, err := r.obj("instanceDetails", false); err != nil {
		return err
	} else if ok {
		if f.InstanceID, err = inst.str("instanceId", f.ResourceKind == ResourceInstance); err != nil {
			return err
		}
		if err := guardDutyTags(inst, f.Tags); err != nil {
			return err
		}
	} else if f.ResourceKind == ResourceInstance {
		return errorf(r.at("instanceDetails"), "missing for resourceType Instance")
	}
	if key, ok, err := r.obj("accessKeyDetails", false); err != nil {
		return err
	} else if ok {
		if f.AccessKeyID, err = key.str("accessKeyId", false); err != nil {
			return err
		}
		userName, err := key.str("userName", false)
		if err != nil {
			return err
		}
		userType, err := key.str("userType", false)
		if err != nil {
			return err
		}
		if _, err := key.str("principalId", false); err != nil {
			return err
		}
		// For an assumed-role session GuardDuty puts the role's name in
		// userName.
		if userType == "AssumedRole" || userType == "Role" {
			f.RoleName = userName
		} else {
			f.UserName = userName
		}
	} else if f.ResourceKind == ResourceAccessKey {
		return errorf(r.at("accessKeyDetails"), "missing for resourceType AccessKey")
	}
	buckets, err := r.array("s3BucketDetails", false)
	if err != nil {
		return err
	}
	for i, v := range buckets {
		b, err := asObject(v, fmt.Sprintf("%s[%d]", r.at("s3BucketDetails"), i))
		if err != nil {
			return err
		}
		name, err := b.str("name", true)
		if err != nil {
			return err
		}
		if f.Bucket == "" {
			f.Bucket = name
			if err := guardDutyTags(b, f.Tags); err != nil {
				return err
			}
		}
	}
	if f.ResourceKind == ResourceS3Bucket && f.Bucket == "" {
		return errorf(r.at("s3BucketDetails"), "missing for resourceType %s", f.ResourceType)
	}
	if fn, ok, err := r.obj("lambdaDetails", false); err != nil {
		return err
	} else if ok {
		if f.FunctionName, err = fn.str("functionName", f.ResourceKind == ResourceLambda); err != nil {
			return err
		}
		if err := guardDutyTags(fn, f.Tags); err != nil {
			return err
		}
	}
	return nil
}

// guardDutyTags reads GuardDuty's [{"key": …, "value": …}] tag lists.
func guardDutyTags(o object, into map[string]string) error {
	list, err := o.array("tags", false)
	if err != nil {
		return err
	}
	for i, v := range list {
		tag, err := asObject(v, fmt.Sprintf("%s[%d]", o.at("tags"), i))
		if err != nil {
			return err
		}
		k, err := tag.str("key", true)
		if err != nil {
			return err
		}
		val, err := tag.str("value", false)
		if err != nil {
			return err
		}
		into[k] = val
	}
	return nil
}

// lastSegment returns what follows the last sep in s.
func lastSegment(s, sep string) string {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[i+len(sep):]
	}
	return s
}
