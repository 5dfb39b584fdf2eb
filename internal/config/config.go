// Package config gives every command the same flag handling: a flag may also be
// set through an environment variable, so containers and compose files can
// configure a service without rewriting its command line.
//
// Precedence is command line, then environment, then the flag's default.
package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName is the environment variable that backs a flag: the prefix and the
// flag name upper-cased, with dashes turned into underscores
// ("ORDERLY_EVENTSTORE" + "max-event-size" -> "ORDERLY_EVENTSTORE_MAX_EVENT_SIZE").
func EnvName(prefix, flagName string) string {
	name := strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
	if prefix == "" {
		return name
	}
	return prefix + "_" + name
}

// Parse parses args into fs, then fills every flag that was not given on the
// command line from its environment variable (see EnvName). Values from the
// environment go through the flag's own Set, so they are validated exactly like
// command-line values. The usage text of each flag names its variable.
func Parse(fs *flag.FlagSet, prefix string, args []string) error {
	return parse(fs, prefix, args, os.LookupEnv)
}

func parse(fs *flag.FlagSet, prefix string, args []string, lookup func(string) (string, bool)) error {
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage = fmt.Sprintf("%s (env %s)", f.Usage, EnvName(prefix, f.Name))
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		env := EnvName(prefix, f.Name)
		value, ok := lookup(env)
		if !ok {
			return
		}
		if setErr := fs.Set(f.Name, value); setErr != nil {
			err = fmt.Errorf("environment variable %s=%q: %w", env, value, setErr)
		}
	})
	return err
}
