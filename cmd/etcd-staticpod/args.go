package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
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
		return action(nc)
	}
}
