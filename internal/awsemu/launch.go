package awsemu

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// launchRequest describes an instance to create, from a seed or as an Auto
// Scaling replacement.
type launchRequest struct {
	id             string
	name           string
	instanceType   string
	imageID        string
	subnet         *subnet
	groups         []string
	privateIP      string
	publicIP       string
	state          string
	tags           tags
	volumes        []VolumeSeed
	consoleOutput  string
	launchTime     time.Time
	disableAPITerm bool
	keyName        string
	profile        *instanceProfile
	// interfaces are secondary interfaces, already resolved.
	interfaces []secondaryInterface
}

// secondaryInterface is a resolved secondary network interface request.
type secondaryInterface struct {
	id          string
	subnet      *subnet
	groups      []string
	privateIP   string
	description string
}

// launchInstance creates an instance with its primary interface, volumes
// and profile association in the region. The caller holds the account lock
// (or owns the account exclusively while seeding).
func (e *Emulator) launchInstance(account string, rg *region, req launchRequest) (*instance, error) {
	id := req.id
	if id == "" {
		id = e.ids.resource("i")
	} else if !validEC2ID(id, "i") {
		return nil, fmt.Errorf("instance id %q does not look like i-0123456789abcdef0", id)
	}
	if rg.instances[id] != nil {
		return nil, fmt.Errorf("instance %s already exists", id)
	}
	sn := req.subnet
	in := &instance{
		id:               id,
		reservationID:    e.ids.resource("r"),
		imageID:          orDefault(req.imageID, "ami-0c02fb55956c7d316"),
		instanceType:     orDefault(req.instanceType, "t3.micro"),
		state:            orDefault(req.state, "running"),
		subnetID:         sn.id,
		vpcID:            sn.vpcID,
		az:               sn.az,
		publicIP:         req.publicIP,
		keyName:          req.keyName,
		architecture:     "x86_64",
		launchTime:       req.launchTime,
		rootDevice:       "/dev/xvda",
		tags:             req.tags.clone(),
		disableAPITerm:   req.disableAPITerm,
		shutdownBehavior: "stop",
		sourceDestCheck:  true,
	}
	if req.name != "" {
		in.tags["Name"] = req.name
	}
	ip := req.privateIP
	if ip == "" {
		ip = sn.allocateIP()
	} else {
		if sn.used == nil {
			sn.used = map[string]bool{}
		}
		sn.used[ip] = true
	}
	if ip == "" {
		return nil, fmt.Errorf("subnet %s has no free address for instance %s", sn.id, id)
	}
	in.privateIP = ip

	eni := &networkInterface{
		id: e.ids.resource("eni"), subnetID: sn.id, vpcID: sn.vpcID, az: sn.az, privateIP: ip, publicIP: req.publicIP,
		description: "", instanceID: id, deviceIndex: 0, attachmentID: e.ids.resource("eni-attach"), attachTime: req.launchTime,
		deleteOnTerm: true, groups: append([]string(nil), req.groups...), sourceDestCheck: true, tags: tags{},
	}
	eni.mac = macFor(eni.id)
	eni.history = []groupChange{{at: req.launchTime, operation: "RunInstances", groups: append([]string(nil), req.groups...)}}
	rg.enis[eni.id] = eni
	in.enis = []string{eni.id}
	for i, si := range req.interfaces {
		if si.subnet.az != sn.az || si.subnet.vpcID != sn.vpcID {
			return nil, fmt.Errorf("instance %s: interface subnet %s is not in %s of %s", id, si.subnet.id, sn.az, sn.vpcID)
		}
		ip := si.privateIP
		if ip == "" {
			ip = si.subnet.allocateIP()
		} else {
			if si.subnet.used == nil {
				si.subnet.used = map[string]bool{}
			}
			si.subnet.used[ip] = true
		}
		x := &networkInterface{
			id: si.id, subnetID: si.subnet.id, vpcID: si.subnet.vpcID, az: sn.az, privateIP: ip, description: si.description,
			instanceID: id, deviceIndex: int32(i + 1), attachmentID: e.ids.resource("eni-attach"), attachTime: req.launchTime,
			groups: slices.Clone(si.groups), sourceDestCheck: true, tags: tags{},
		}
		if x.id == "" {
			x.id = e.ids.resource("eni")
		}
		x.mac = macFor(x.id)
		x.history = []groupChange{{at: req.launchTime, operation: "AttachNetworkInterface", groups: slices.Clone(si.groups)}}
		rg.enis[x.id] = x
		in.enis = append(in.enis, x.id)
	}

	vols := req.volumes
	if len(vols) == 0 {
		vols = []VolumeSeed{{Size: 8}}
	}
	for i, vs := range vols {
		v := &volume{
			id: vs.ID, az: sn.az, size: vs.Size, volumeType: orDefault(vs.Type, "gp3"), state: "in-use",
			encrypted: vs.Encrypted, created: req.launchTime, instanceID: id, attachTime: req.launchTime, tags: tags(vs.Tags).clone(),
		}
		if v.id == "" {
			v.id = e.ids.resource("vol")
		}
		if v.size == 0 {
			v.size = 8
		}
		if v.volumeType == "gp3" {
			v.iops = 3000
		}
		if v.encrypted {
			v.kmsKeyID = resolveKMSKey(vs.KMSKeyID, account, rg.name)
		}
		v.device = vs.Device
		if v.device == "" {
			if i == 0 {
				v.device = "/dev/xvda"
			} else {
				v.device = "/dev/sd" + string(rune('f'+i-1))
			}
		}
		if i == 0 {
			in.rootDevice = v.device
			v.deleteOnT = !vs.KeepOnTermination
		} else {
			v.deleteOnT = false
		}
		rg.volumes[v.id] = v
		in.devices = append(in.devices, blockDevice{deviceName: v.device, volumeID: v.id, deleteOnTermination: v.deleteOnT, attachTime: req.launchTime})
	}

	in.consoleOutput = req.consoleOutput
	if in.consoleOutput == "" {
		in.consoleOutput = bootLog(in)
	}
	if req.profile != nil {
		a := &profileAssociation{id: e.ids.resource("iip-assoc"), instanceID: id, profileARN: req.profile.arn, profileID: req.profile.id, state: "associated", at: req.launchTime}
		rg.associations[a.id] = a
	}
	rg.instances[id] = in
	return in, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// bootLog is the console output of an instance that booted normally.
func bootLog(in *instance) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[    0.000000] Linux version 6.1.109-118.189.amzn2023.x86_64 (mockbuild@ip-10-0-35-245) (gcc (GCC) 11.4.1) #1 SMP PREEMPT_DYNAMIC\n")
	fmt.Fprintf(&b, "[    0.000000] Command line: BOOT_IMAGE=(hd0,gpt1)/boot/vmlinuz root=UUID=d0a1f1f3 ro console=tty0 console=ttyS0,115200n8\n")
	fmt.Fprintf(&b, "[    1.204331] EXT4-fs (nvme0n1p1): mounted filesystem with ordered data mode.\n")
	fmt.Fprintf(&b, "[    3.876512] cloud-init[1588]: Cloud-init v. 22.2.2 running 'init' at %s. Up 3.87 seconds.\n", in.launchTime.UTC().Format(time.RFC1123))
	fmt.Fprintf(&b, "[    3.991205] cloud-init[1588]: ci-info: | ens5 | True | %s | 255.255.255.0 | global | %s |\n", in.privateIP, "02:00:00:00:00:01")
	fmt.Fprintf(&b, "[    5.402117] cloud-init[1706]: instance-id: %s\n", in.id)
	fmt.Fprintf(&b, "\nAmazon Linux 2023.5.20240916\nKernel 6.1.109-118.189.amzn2023.x86_64 on an x86_64 (-)\n\n%s login: \n", privateDNS(in.privateIP, "us-east-1"))
	return b.String()
}
