package main

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

type kubeSummary struct {
	Objects  []string `json:"objects"`  // KIND/NAME, in the file's order
	External []string `json:"external"` // what the file uses and does not make
}

type workload struct {
	kind, name, namespace string
	selector              map[string]string
	template              corev1.PodTemplateSpec
	claims                []string
	serviceName           string
}

// documents splits a YAML stream on its "---" lines, dropping empty documents.
func documents(data []byte) [][]byte {
	var docs [][]byte
	for _, doc := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
	return docs
}

func stripComments(doc []byte) []byte {
	var kept [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			kept = append(kept, line)
		}
	}
	return bytes.Join(kept, []byte("\n"))
}

func kubernetes(path string) (any, []string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []string{err.Error()}
	}
	var problems []string
	summary := kubeSummary{}
	namespaces := map[string]bool{}
	made := map[string]bool{} // KIND/NAMESPACE/NAME
	var services []corev1.Service
	var workloads []workload
	for i, doc := range documents(data) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			problems = append(problems, fmt.Sprintf("document %d: %v", i+1, err))
			continue
		}
		where := fmt.Sprintf("document %d (%s %s)", i+1, meta.APIVersion, meta.Kind)
		// as the API server reads it: field names case-sensitive, none unknown or twice
		strict := func(into any) bool {
			asJSON, err := yaml.YAMLToJSON(doc)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", where, err))
				return false
			}
			strictErrs, err := sigsjson.UnmarshalStrict(asJSON, into)
			if err != nil {
				strictErrs = append(strictErrs, err)
			}
			for _, e := range strictErrs {
				problems = append(problems, fmt.Sprintf("%s: %v", where, e))
			}
			return len(strictErrs) == 0
		}
		var name, namespace string
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 Namespace":
			var o corev1.Namespace
			if !strict(&o) {
				continue
			}
			name = o.Name
			namespaces[name] = true
		case "v1 ConfigMap":
			var o corev1.ConfigMap
			if !strict(&o) {
				continue
			}
			name, namespace = o.Name, o.Namespace
		case "v1 Secret":
			var o corev1.Secret
			if !strict(&o) {
				continue
			}
			name, namespace = o.Name, o.Namespace
		case "v1 Service":
			var o corev1.Service
			if !strict(&o) {
				continue
			}
			name, namespace = o.Name, o.Namespace
			services = append(services, o)
		case "apps/v1 Deployment":
			var o appsv1.Deployment
			if !strict(&o) {
				continue
			}
			name, namespace = o.Name, o.Namespace
			workloads = append(workloads, workload{
				kind: "Deployment", name: name, namespace: namespace,
				selector: selector(o.Spec.Selector), template: o.Spec.Template,
			})
		case "apps/v1 StatefulSet":
			var o appsv1.StatefulSet
			if !strict(&o) {
				continue
			}
			name, namespace = o.Name, o.Namespace
			w := workload{
				kind: "StatefulSet", name: name, namespace: namespace,
				selector: selector(o.Spec.Selector), template: o.Spec.Template,
				serviceName: o.Spec.ServiceName,
			}
			for _, c := range o.Spec.VolumeClaimTemplates {
				w.claims = append(w.claims, c.Name)
			}
			workloads = append(workloads, w)
		default:
			problems = append(problems, where+": a kind this check does not know")
			continue
		}
		if name == "" {
			problems = append(problems, where+": no metadata.name")
		}
		if meta.Kind != "Namespace" && namespace == "" {
			problems = append(problems, fmt.Sprintf("%s %s: no metadata.namespace", meta.Kind, name))
		}
		made[meta.Kind+"/"+namespace+"/"+name] = true
		summary.Objects = append(summary.Objects, meta.Kind+"/"+name)
	}
	external := map[string]bool{}
	use := func(kind, namespace, name string) {
		if !made[kind+"/"+namespace+"/"+name] {
			external[kind+"/"+name] = true
		}
	}
	for _, w := range workloads {
		problems = append(problems, checkWorkload(w, use, made)...)
	}
	for _, s := range services {
		problems = append(problems, checkService(s, workloads)...)
	}
	for key := range made {
		ns := strings.Split(key, "/")[1]
		if ns != "" && !namespaces[ns] {
			external["Namespace/"+ns] = true
		}
	}
	for key := range external {
		summary.External = append(summary.External, key)
	}
	sort.Strings(summary.External)
	return summary, problems
}

func selector(s *metav1.LabelSelector) map[string]string {
	if s == nil {
		return nil
	}
	return s.MatchLabels
}

// within reports whether every label of want is in have, with its value.
func within(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// checkWorkload: its selector picks its own pods, every mount names a volume, every
// named port a probe uses is declared, its StatefulSet service exists; what it uses
// from ConfigMaps and Secrets is noted with use.
func checkWorkload(w workload, use func(kind, namespace, name string), made map[string]bool) []string {
	var problems []string
	where := w.kind + " " + w.name
	if len(w.selector) == 0 || !within(w.selector, w.template.Labels) {
		problems = append(problems, where+": spec.selector does not match the pod template's labels")
	}
	if w.serviceName != "" && !made["Service/"+w.namespace+"/"+w.serviceName] {
		problems = append(problems, fmt.Sprintf("%s: serviceName %q names no Service here", where, w.serviceName))
	}
	volumes := map[string]bool{}
	for _, c := range w.claims {
		volumes[c] = true
	}
	for _, v := range w.template.Spec.Volumes {
		volumes[v.Name] = true
		if v.ConfigMap != nil {
			use("ConfigMap", w.namespace, v.ConfigMap.Name)
		}
		if v.Secret != nil {
			use("Secret", w.namespace, v.Secret.SecretName)
		}
	}
	if len(w.template.Spec.Containers) == 0 {
		problems = append(problems, where+": no containers")
	}
	for _, c := range w.template.Spec.Containers {
		if c.Image == "" {
			problems = append(problems, fmt.Sprintf("%s: container %q has no image", where, c.Name))
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				problems = append(problems, fmt.Sprintf("%s: container %q mounts %q, which is no volume", where, c.Name, m.Name))
			}
		}
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				use("ConfigMap", w.namespace, e.ConfigMapRef.Name)
			}
			if e.SecretRef != nil {
				use("Secret", w.namespace, e.SecretRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				use("Secret", w.namespace, e.ValueFrom.SecretKeyRef.Name)
			}
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				use("ConfigMap", w.namespace, e.ValueFrom.ConfigMapKeyRef.Name)
			}
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for what, probe := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
			if probe == nil {
				continue
			}
			var port *intstr.IntOrString
			if probe.HTTPGet != nil {
				port = &probe.HTTPGet.Port
			}
			if probe.TCPSocket != nil {
				port = &probe.TCPSocket.Port
			}
			if port != nil && port.Type == intstr.String && !ports[port.StrVal] {
				problems = append(problems, fmt.Sprintf("%s: container %q %s uses port %q, which it does not declare", where, c.Name, what, port.StrVal))
			}
		}
	}
	return problems
}

// checkService: its selector picks the pods of a workload here, and a named target
// port is one of theirs.
func checkService(s corev1.Service, workloads []workload) []string {
	where := "Service " + s.Name
	for _, w := range workloads {
		if w.namespace != s.Namespace || len(s.Spec.Selector) == 0 || !within(s.Spec.Selector, w.template.Labels) {
			continue
		}
		var problems []string
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type != intstr.String {
				continue
			}
			found := false
			for _, c := range w.template.Spec.Containers {
				for _, cp := range c.Ports {
					found = found || cp.Name == p.TargetPort.StrVal
				}
			}
			if !found {
				problems = append(problems, fmt.Sprintf("%s: targetPort %q is no port of %s %s", where, p.TargetPort.StrVal, w.kind, w.name))
			}
		}
		return problems
	}
	return []string{where + ": its selector picks no workload's pods here"}
}
