// Command check validates idres's deploy/ files without a container engine or a cluster:
//
//	check compose FILE     loads FILE as Docker Compose does (compose-go: the Compose
//	                       Specification's JSON schema, interpolation, env_files, merge
//	                       keys, and consistency: services, volumes and networks named
//	                       where they are used)
//	check kubernetes FILE  decodes every document of FILE strictly into the Kubernetes
//	                       API's own Go types (k8s.io/api: an unknown or misspelt field
//	                       or a wrong type is an error), then checks what refers to what
//	                       inside it (selectors, volumes, named ports, namespaces)
//
// It prints a JSON summary on stdout; problems on stderr, with exit status 1. What it
// cannot know (what an API server's admission or a scheduler would refuse, whether an
// image exists) it does not check.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: check compose|kubernetes FILE")
		os.Exit(2)
	}
	var summary any
	var problems []string
	switch os.Args[1] {
	case "compose":
		summary, problems = compose(os.Args[2])
	case "kubernetes":
		summary, problems = kubernetes(os.Args[2])
	default:
		fmt.Fprintln(os.Stderr, "usage: check compose|kubernetes FILE")
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	out, _ := json.Marshal(summary)
	fmt.Println(string(out))
}

type composeSummary struct {
	Name     string   `json:"name"`
	Services []string `json:"services"`
	Volumes  []string `json:"volumes"`
}

func compose(path string) (any, []string) {
	options, err := cli.NewProjectOptions(
		[]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithOsEnv,
		cli.WithConsistency(true),
	)
	if err != nil {
		return nil, []string{err.Error()}
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return nil, []string{err.Error()}
	}
	summary := composeSummary{Name: project.Name, Services: project.ServiceNames()}
	for name := range project.Volumes {
		summary.Volumes = append(summary.Volumes, name)
	}
	sort.Strings(summary.Services)
	sort.Strings(summary.Volumes)
	return summary, nil
}
