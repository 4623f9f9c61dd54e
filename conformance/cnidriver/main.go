// Command cnidriver drives CNI plugins through libcni, the library container
// runtimes embed, so conformance tests exercise plugins exactly the way
// containerd or CRI-O would: config injection, prevResult chaining, the result
// cache and version conversion all come from libcni itself.
//
// It never enters a network namespace on its own; tests run it inside the
// "host" namespace with `ip netns exec`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// Exit codes: tests treat exitUsage as a bug in the test itself, and
// exitFailed as the outcome under test.
const (
	exitFailed = 1
	exitUsage  = 2
)

const usage = `usage:
  cnidriver {add|check|del} --conflist FILE --netns PATH --ifname IF --containerid ID --cachedir DIR
            [--capargs JSON] [--cniargs "K=V;K2=V2"] [--path DIR1:DIR2] [--timeout DURATION]
  cnidriver version --plugin TYPE [--path DIR1:DIR2] [--timeout DURATION]
plugin directories come from --path, else from CNI_PATH.`

type options struct {
	conflist    string
	netns       string
	ifname      string
	containerID string
	cacheDir    string
	capArgs     string
	cniArgs     string
	path        string
	plugin      string
	timeout     time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return exitUsage
	}
	verb := args[0]
	opts, err := parseFlags(verb, args[1:], stderr)
	if err != nil {
		fmt.Fprintf(stderr, "cnidriver: %v\n%s\n", err, usage)
		return exitUsage
	}
	// A plugin that hangs must fail the test, not stall the whole suite;
	// libcni kills the plugin process when the context expires.
	ctx, cancel := context.WithTimeout(context.Background(), opts.timeout)
	defer cancel()
	switch verb {
	case "version":
		err = runVersion(ctx, opts, stdout)
	default:
		err = runNetworkVerb(ctx, verb, opts, stdout)
	}
	if err != nil {
		var usageErr *usageError
		if errors.As(err, &usageErr) {
			fmt.Fprintf(stderr, "cnidriver: %v\n%s\n", err, usage)
			return exitUsage
		}
		reportFailure(stderr, verb, err)
		return exitFailed
	}
	return 0
}

// usageError marks problems with the driver's own arguments, as opposed to
// errors coming back from libcni or a plugin.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...interface{}) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}

func parseFlags(verb string, args []string, stderr io.Writer) (*options, error) {
	switch verb {
	case "add", "check", "del", "version":
	default:
		return nil, fmt.Errorf("unknown command %q", verb)
	}
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.StringVar(&o.conflist, "conflist", "", "network configuration list file")
	fs.StringVar(&o.netns, "netns", "", "CNI_NETNS passed to plugins (may be empty for del)")
	fs.StringVar(&o.ifname, "ifname", "", "interface name inside the container")
	fs.StringVar(&o.containerID, "containerid", "", "container id")
	fs.StringVar(&o.cacheDir, "cachedir", "", "libcni result cache directory")
	fs.StringVar(&o.capArgs, "capargs", "", "capability arguments as a JSON object")
	fs.StringVar(&o.cniArgs, "cniargs", "", "CNI_ARGS as K=V;K2=V2")
	fs.StringVar(&o.path, "path", "", "plugin directories separated by ':' (default: $CNI_PATH)")
	fs.StringVar(&o.plugin, "plugin", "", "plugin type for the version command")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up on the whole operation after this long")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.timeout <= 0 {
		return nil, errors.New("--timeout must be positive")
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.path == "" {
		o.path = os.Getenv("CNI_PATH")
	}
	if o.path == "" {
		return nil, errors.New("no plugin directories: pass --path or set CNI_PATH")
	}
	if verb == "version" {
		if o.plugin == "" {
			return nil, errors.New("version needs --plugin")
		}
		return o, nil
	}
	// The cache directory is mandatory so that no test ever touches the
	// system-wide /var/lib/cni that libcni falls back to.
	missing := []string{}
	for _, req := range []struct{ name, val string }{
		{"--conflist", o.conflist}, {"--ifname", o.ifname},
		{"--containerid", o.containerID}, {"--cachedir", o.cacheDir},
	} {
		if req.val == "" {
			missing = append(missing, req.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	return o, nil
}

func newCNIConfig(o *options) (*libcni.CNIConfig, error) {
	var dirs []string
	for _, d := range filepath.SplitList(o.path) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		return nil, usagef("plugin path %q names no directory", o.path)
	}
	return libcni.NewCNIConfigWithCacheDir(dirs, o.cacheDir, nil), nil
}

func runVersion(ctx context.Context, o *options, stdout io.Writer) error {
	cni, err := newCNIConfig(o)
	if err != nil {
		return err
	}
	info, err := cni.GetVersionInfo(ctx, o.plugin)
	if err != nil {
		return err
	}
	return info.Encode(stdout)
}

func runNetworkVerb(ctx context.Context, verb string, o *options, stdout io.Writer) error {
	raw, err := os.ReadFile(o.conflist)
	if err != nil {
		return usagef("reading conflist: %v", err)
	}
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		return err
	}
	rt, err := runtimeConf(o)
	if err != nil {
		return err
	}
	cni, err := newCNIConfig(o)
	if err != nil {
		return err
	}
	switch verb {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		// PrintTo is what cnitool and plugins use: the result in its own
		// cniVersion, pretty-printed, exactly the bytes a runtime would log.
		return result.PrintTo(stdout)
	case "check":
		return cni.CheckNetworkList(ctx, list, rt)
	case "del":
		return cni.DelNetworkList(ctx, list, rt)
	}
	return usagef("unknown command %q", verb)
}

func runtimeConf(o *options) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{
		ContainerID: o.containerID,
		NetNS:       o.netns,
		IfName:      o.ifname,
	}
	if o.cniArgs != "" {
		pairs, err := parseCNIArgs(o.cniArgs)
		if err != nil {
			return nil, err
		}
		rt.Args = pairs
	}
	if o.capArgs != "" {
		capArgs, err := parseCapArgs(o.capArgs)
		if err != nil {
			return nil, err
		}
		rt.CapabilityArgs = capArgs
	}
	return rt, nil
}
