package awsemu

import (
	"crypto/md5" //nolint:gosec // EC2's imported-key fingerprint is an MD5 digest by definition
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// keyPair is an EC2 key pair imported into a region.
type keyPair struct {
	id          string
	name        string
	fingerprint string
	keyType     string
	created     time.Time
	tags        tags
}

// ec2EradicationOperations are the EC2 calls an attacker uses to keep a way
// in (imported key pairs) and those eradication needs (delete the key pair,
// snapshot then stop an instance).
func ec2EradicationOperations() []*operation {
	return []*operation{
		{name: "ImportKeyPair", handle: (*Emulator).ec2ImportKeyPair},
		{name: "DeleteKeyPair", handle: (*Emulator).ec2DeleteKeyPair},
		{name: "DescribeKeyPairs", readOnly: true, handle: (*Emulator).ec2DescribeKeyPairs},
		{name: "CreateSnapshot", handle: (*Emulator).ec2CreateSnapshot},
		{name: "StopInstances", handle: (*Emulator).ec2StopInstances},
	}
}

// keyFingerprint is the fingerprint EC2 shows for an imported public key:
// the MD5 digest of the key's bytes, colon-separated.
func keyFingerprint(material []byte) string {
	d := md5.Sum(material) //nolint:gosec // EC2 defines the imported-key fingerprint as MD5
	h := hex.EncodeToString(d[:])
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func (e *Emulator) ec2ImportKeyPair(c *call) (any, error) {
	name := c.form.str("KeyName")
	if name == "" {
		return nil, ec2Missing("KeyName")
	}
	if len(name) > 255 {
		return nil, ec2Invalid("Value (%s) for parameter KeyName is invalid. Length exceeds maximum of 255.", name)
	}
	material, err := base64.StdEncoding.DecodeString(c.form.str("PublicKeyMaterial"))
	if err != nil || len(material) == 0 {
		return nil, errorf(http.StatusBadRequest, "InvalidKey.Format", "Key is not in valid OpenSSH public key format")
	}
	keyType := "rsa"
	if strings.HasPrefix(string(material), "ssh-ed25519 ") {
		keyType = "ed25519"
	} else if !strings.HasPrefix(string(material), "ssh-rsa ") {
		return nil, errorf(http.StatusBadRequest, "InvalidKey.Format", "Key is not in valid OpenSSH public key format")
	}
	t, ae := tagSpecifications(c.form, "key-pair")
	if ae != nil {
		return nil, ae
	}
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	if rg.keyPairs[name] != nil {
		return nil, errorf(http.StatusBadRequest, "InvalidKeyPair.Duplicate", "The keypair already exists")
	}
	k := &keyPair{id: e.ids.resource("key"), name: name, fingerprint: keyFingerprint(material), keyType: keyType, created: c.now, tags: t}
	rg.keyPairs[name] = k
	c.trail.response = map[string]any{"keyName": k.name, "keyFingerprint": k.fingerprint, "keyPairId": k.id}
	return &struct {
		ec2Envelope
		KeyFingerprint string   `xml:"keyFingerprint"`
		KeyName        string   `xml:"keyName"`
		KeyPairID      string   `xml:"keyPairId"`
		Tags           []ec2Tag `xml:"tagSet>item"`
	}{KeyFingerprint: k.fingerprint, KeyName: k.name, KeyPairID: k.id, Tags: ec2Tags(k.tags)}, nil
}

// ec2DeleteKeyPair deletes a key pair by name or id. Like EC2, a name that
// names no key pair succeeds; an id that names none is an error.
func (e *Emulator) ec2DeleteKeyPair(c *call) (any, error) {
	name, id := c.form.str("KeyName"), c.form.str("KeyPairId")
	if name == "" && id == "" {
		return nil, ec2Missing("KeyName")
	}
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	var found *keyPair
	for _, k := range rg.keyPairs {
		if (name != "" && k.name == name) || (id != "" && k.id == id) {
			found = k
		}
	}
	if found == nil {
		if id != "" {
			return nil, errorf(http.StatusBadRequest, "InvalidKeyPair.NotFound", "The key pair '%s' does not exist", id)
		}
		return &ec2Return{Return: true}, nil
	}
	delete(rg.keyPairs, found.name)
	c.trail.response = map[string]any{"_return": true, "keyPairId": found.id}
	return &struct {
		ec2Return
		KeyPairID string `xml:"keyPairId"`
	}{ec2Return{Return: true}, found.id}, nil
}

func (e *Emulator) ec2DescribeKeyPairs(c *call) (any, error) {
	names, ids := c.form.strings("KeyName"), c.form.strings("KeyPairId")
	type keyItem struct {
		KeyPairID      string   `xml:"keyPairId"`
		KeyType        string   `xml:"keyType"`
		Tags           []ec2Tag `xml:"tagSet>item"`
		CreateTime     string   `xml:"createTime"`
		KeyName        string   `xml:"keyName"`
		KeyFingerprint string   `xml:"keyFingerprint"`
	}
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	out := &struct {
		ec2Envelope
		Keys []keyItem `xml:"keySet>item"`
	}{}
	seen := map[string]bool{}
	for _, n := range rg.sortedKeyPairNames() {
		k := rg.keyPairs[n]
		if (len(names) > 0 || len(ids) > 0) && !slices.Contains(names, k.name) && !slices.Contains(ids, k.id) {
			continue
		}
		seen[k.name], seen[k.id] = true, true
		out.Keys = append(out.Keys, keyItem{k.id, k.keyType, ec2Tags(k.tags), xmlTime(k.created), k.name, k.fingerprint})
	}
	for _, n := range names {
		if !seen[n] {
			return nil, errorf(http.StatusBadRequest, "InvalidKeyPair.NotFound", "The key pair '%s' does not exist", n)
		}
	}
	for _, id := range ids {
		if !seen[id] {
			return nil, errorf(http.StatusBadRequest, "InvalidKeyPair.NotFound", "The key pair '%s' does not exist", id)
		}
	}
	return out, nil
}

func (rg *region) sortedKeyPairNames() []string {
	return slices.Sorted(maps.Keys(rg.keyPairs))
}

// ec2CreateSnapshot snapshots one volume.
func (e *Emulator) ec2CreateSnapshot(c *call) (any, error) {
	p := c.form
	volID := p.str("VolumeId")
	if volID == "" {
		return nil, ec2Missing("VolumeId")
	}
	desc := p.str("Description")
	if len(desc) > maxSnapshotDescription {
		return nil, ec2Invalid("Value for parameter description is too long; the maximum length is %d characters", maxSnapshotDescription)
	}
	t, ae := tagSpecifications(p, "snapshot")
	if ae != nil {
		return nil, ae
	}
	rg := c.ec2Region()
	v := rg.volumes[volID]
	if v == nil {
		c.acct.mu.Unlock()
		return nil, errorf(http.StatusBadRequest, "InvalidVolume.NotFound", "The volume '%s' does not exist.", volID)
	}
	s := &snapshot{id: e.ids.resource("snap"), volumeID: v.id, volumeSize: v.size, description: desc, started: c.now,
		encrypted: v.encrypted, kmsKeyID: v.kmsKeyID, owner: c.who.account, tags: t}
	rg.snapshots[s.id] = s
	c.acct.mu.Unlock()
	e.snapMu.Lock()
	e.snapshotIndex[s.id] = snapshotLocation{c.who.account, c.region}
	e.snapMu.Unlock()
	c.trail.resources = append(c.trail.resources, trailResource{"AWS::EC2::Snapshot", s.id})
	c.trail.response = map[string]any{"snapshotId": s.id, "volumeId": s.volumeID, "status": "pending",
		"startTime": s.started.UTC().UnixMilli(), "ownerId": s.owner, "volumeSize": s.volumeSize, "encrypted": s.encrypted}
	return &struct {
		ec2Envelope
		SnapshotID  string   `xml:"snapshotId"`
		VolumeID    string   `xml:"volumeId"`
		Status      string   `xml:"status"`
		StartTime   string   `xml:"startTime"`
		Progress    string   `xml:"progress"`
		OwnerID     string   `xml:"ownerId"`
		VolumeSize  int32    `xml:"volumeSize"`
		Description string   `xml:"description"`
		Encrypted   bool     `xml:"encrypted"`
		Tags        []ec2Tag `xml:"tagSet>item"`
	}{SnapshotID: s.id, VolumeID: s.volumeID, Status: "pending", StartTime: xmlTime(s.started), OwnerID: s.owner,
		VolumeSize: s.volumeSize, Description: s.description, Encrypted: s.encrypted, Tags: ec2Tags(s.tags)}, nil
}

type ec2StateChange struct {
	InstanceID    string           `xml:"instanceId"`
	CurrentState  ec2InstanceState `xml:"currentState"`
	PreviousState ec2InstanceState `xml:"previousState"`
}

// ec2StopInstances stops running instances. The emulator has no guest to
// shut down, so the instance answers "stopping" and is stopped at once.
func (e *Emulator) ec2StopInstances(c *call) (any, error) {
	ids := c.form.strings("InstanceId")
	if len(ids) == 0 {
		return nil, ec2Missing("InstanceId")
	}
	rg := c.ec2Region()
	defer c.acct.mu.Unlock()
	var targets []*instance
	for _, id := range ids {
		in, ae := rg.instanceFor(id)
		if ae != nil {
			return nil, ae
		}
		if in.disableAPIStop {
			return nil, errorf(http.StatusBadRequest, "OperationNotPermitted",
				"The instance '%s' may not be stopped. Modify its 'disableApiStop' instance attribute and try again.", in.id)
		}
		if in.state == "terminated" || in.state == "shutting-down" {
			return nil, errorf(http.StatusBadRequest, "IncorrectInstanceState",
				"This instance '%s' is not in a state from which it can be stopped.", in.id)
		}
		targets = append(targets, in)
	}
	out := &struct {
		ec2Envelope
		Instances []ec2StateChange `xml:"instancesSet>item"`
	}{}
	var items []any
	for _, in := range targets {
		prev := in.state
		cur := "stopping"
		if prev == "stopped" {
			cur = "stopped"
		}
		in.state = "stopped"
		ch := ec2StateChange{in.id, ec2InstanceState{instanceStateCodes[cur], cur}, ec2InstanceState{instanceStateCodes[prev], prev}}
		out.Instances = append(out.Instances, ch)
		items = append(items, map[string]any{"instanceId": in.id,
			"currentState":  map[string]any{"code": ch.CurrentState.Code, "name": cur},
			"previousState": map[string]any{"code": ch.PreviousState.Code, "name": prev}})
	}
	c.trail.response = map[string]any{"instancesSet": map[string]any{"items": items}}
	return out, nil
}

// TerminateInstance terminates an instance out of band, as an Auto Scaling
// scale-in, a Spot reclaim or a user in the console does: its state becomes
// terminated and DescribeInstances reports it so. Like EC2, it refuses an
// instance with termination protection (disableApiTermination).
func (e *Emulator) TerminateInstance(accountID, regionName, instanceID string) error {
	a := e.account(accountID)
	if a == nil {
		return fmt.Errorf("awsemu: no account %s", accountID)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.regionEnabled(regionName) {
		return fmt.Errorf("awsemu: region %s is not enabled in account %s", regionName, accountID)
	}
	in, ae := a.region(regionName).instanceFor(instanceID)
	if ae != nil {
		return fmt.Errorf("awsemu: %s: %s", ae.Code, ae.Message)
	}
	if in.disableAPITerm {
		return fmt.Errorf("awsemu: OperationNotPermitted: the instance '%s' may not be terminated; modify its 'disableApiTermination' instance attribute and try again", in.id)
	}
	in.state = "terminated"
	return nil
}
