// Package selector implements Tabby's label selector language, the Calico
// grammar: parse, print in a canonical form, and evaluate against labels
// without allocating.
package selector
