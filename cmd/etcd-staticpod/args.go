package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// oneArg is the command's single argument, what naming it in errors.
func oneArg(c *cli.Context, what string) (string, error) {
	switch {
	case c.NArg() == 0:
		return "", badArgs(fmt.Errorf("%s: missing; usage: %s", what, c.Command.UsageText))
	case c.NArg() > 1:
		return "", badArgs(fmt.Errorf("unexpected argument %q: %s takes one %s", c.Args().Get(1), c.Command.HelpName, what))
	}
	arg := c.Args().First()
	if strings.TrimSpace(arg) == "" {
		return "", badArgs(fmt.Errorf("%s %q: must not be empty", what, arg))
	}
	return arg, nil
}

// argAndFormat is the command's single argument (what names it) and its -o format.
func argAndFormat(c *cli.Context, what string) (arg, format string, err error) {
	if arg, err = oneArg(c, what); err != nil {
		return "", "", err
	}
	format, err = outputFormat(c)
	return arg, format, err
}

// withTrailingFlags runs action with the flags that follow the argument
// read too, as in `snapshot save FILE --bundle DIR` (urfave/cli stops at the
// first argument): the arguments are parsed again into a fresh set of the
// command's flags, those given before the argument keeping their values.
// --help among them shows the command's help.
func withTrailingFlags(fresh func() []cli.Flag, action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() < 2 {
			return action(c)
		}
		if slices.ContainsFunc(c.Args().Tail(), func(a string) bool { return a == "-h" || a == "--help" || a == "-help" }) {
			cli.HelpPrinter(c.App.Writer, cli.CommandHelpTemplate, c.Command)
			return nil
		}
		set := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
		set.SetOutput(io.Discard)
		for _, f := range fresh() {
			if err := f.Apply(set); err != nil {
				return badArgs(err)
			}
		}
		// The flags given before the argument, then everything after it.
		var argv []string
		for _, f := range c.Command.Flags {
			name := f.Names()[0]
			if !c.IsSet(name) {
				continue
			}
			switch f.(type) {
			case *cli.BoolFlag:
				argv = append(argv, "--"+name+"="+strconv.FormatBool(c.Bool(name)))
			case *cli.StringSliceFlag:
				for _, v := range c.StringSlice(name) {
					argv = append(argv, "--"+name+"="+v)
				}
			default:
				argv = append(argv, "--"+name+"="+c.String(name))
			}
		}
		args := append(argv, c.Args().Slice()...)
		var positional []string
		for len(args) > 0 {
			if err := set.Parse(args); err != nil {
				return badArgs(err)
			}
			args = set.Args()
			if len(args) > 0 {
				positional = append(positional, args[0])
				args = args[1:]
			}
		}
		// An alias given after the argument (-o) sets its flag's every
		// name, as urfave/cli does for flags before it.
		for _, f := range fresh() {
			names := f.Names()
			var value *string
			set.Visit(func(v *flag.Flag) {
				if slices.Contains(names, v.Name) {
					s := v.Value.String()
					value = &s
				}
			})
			if value != nil && len(names) > 1 {
				for _, n := range names {
					_ = set.Set(n, *value)
				}
			}
		}
		if err := set.Parse(append([]string{"--"}, positional...)); err != nil {
			return badArgs(err)
		}
		nc := cli.NewContext(c.App, set, c.Lineage()[1])
		nc.Command, nc.Context = c.Command, c.Context
		// The flags after the argument are seen only now.
		if err := checkInput(nc, true); err != nil {
			return err
		}
		return action(nc)
	}
}

// pathFlags name files and folders: given empty, they would silently mean
// the current folder or the default, so an empty value is refused.
var pathFlags = []string{"out", "root", "config", "bundle", "cacert", "cert", "key", "ca-cert", "ca-key", "kubelet-config-patch", "cert-dir", "data-dir", "control-plane-cert-dir", "kubelet-path"}

// checkInput refuses, before a command does anything, an empty path flag
// and a control character in any flag or argument: values end up in
// systemd units, YAML, file names and printed commands. --exec is the
// user's own shell command and is passed on as given.
func checkInput(c *cli.Context, parsed bool) error {
	if c.Command == nil {
		return nil
	}
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if name == "exec" || !c.IsSet(name) {
			continue
		}
		var values []string
		switch f.(type) {
		case *cli.StringFlag:
			values = []string{c.String(name)}
		case *cli.StringSliceFlag:
			values = c.StringSlice(name)
		default:
			continue
		}
		for _, v := range values {
			if err := spec.CheckText("--"+name, v); err != nil {
				return badArgs(err)
			}
			if slices.Contains(pathFlags, name) && strings.TrimSpace(v) == "" {
				return badArgs(fmt.Errorf("--%s %q: must not be empty", name, v))
			}
		}
	}
	for _, a := range c.Args().Slice() {
		if !parsed && strings.HasPrefix(a, "-") {
			// A flag after the argument, which withTrailingFlags parses
			// and checks by name (parsed is then true).
			continue
		}
		if err := spec.CheckText("argument", a); err != nil {
			return badArgs(err)
		}
	}
	return nil
}

// checkingInput runs checkInput before every command's action.
func checkingInput(cmds []*cli.Command) {
	for _, cmd := range cmds {
		if action := cmd.Action; action != nil {
			cmd.Action = func(c *cli.Context) error {
				if err := checkInput(c, false); err != nil {
					return err
				}
				return action(c)
			}
		}
		checkingInput(cmd.Subcommands)
	}
}
