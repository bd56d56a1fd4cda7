//! The dependency graph of a workflow's stages, built once per workflow: dependencies,
//! dependents, levels and a topological order, plus what is wrong with `depends_on` entries.
//! The analyzer reports its problems, the planner draws batches from its levels, and the runtime
//! orders its ready queue by them.
use crate::workflow::Workflow;
use petgraph::{algo::toposort, graph::DiGraph};

/// A `depends_on` entry that is not a usable edge, or a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DagProblem {
  /// Stage `stage` names itself at entry `entry`.
  SelfDependency {
    /// The stage.
    stage: usize,
    /// Position in its `depends_on`.
    entry: usize,
  },
  /// Entry `entry` of stage `stage` names no stage.
  Unknown {
    /// The stage.
    stage: usize,
    /// Position in its `depends_on`.
    entry: usize,
  },
  /// Entry `entry` of stage `stage` repeats an earlier one.
  Duplicate {
    /// The stage.
    stage: usize,
    /// Position in its `depends_on`.
    entry: usize,
  },
  /// A cycle, closed by entry `entry` of stage `stage`; `path` starts and ends at one stage.
  Cycle {
    /// The stage whose entry closes the cycle.
    stage: usize,
    /// Position in its `depends_on`.
    entry: usize,
    /// The stages around the cycle.
    path: Vec<usize>,
  },
}

/// The dependency graph of one workflow.
#[derive(Debug, Clone, Default)]
pub struct Dag {
  /// For each stage, the stages it depends on (resolved, without repeats or itself).
  pub deps: Vec<Vec<usize>>,
  /// For each dependency in `deps`, its position in the stage's `depends_on` (for spans).
  pub entries: Vec<Vec<usize>>,
  /// For each stage, the stages that depend on it, in file order.
  pub dependents: Vec<Vec<usize>>,
  /// For each stage, the length of the longest dependency chain above it (roots are 0).
  pub level: Vec<usize>,
  /// Every stage, dependencies before dependents; file order when the graph has a cycle.
  pub order: Vec<usize>,
  /// Entries that are not edges, and cycles, in file order.
  pub problems: Vec<DagProblem>,
}

impl Dag {
  /// Builds the graph of `workflow`'s stages.
  pub fn new(workflow: &Workflow) -> Self {
    let n = workflow.stages.len();
    let index = workflow.stage_index();
    let mut dag = Self {
      deps: Vec::with_capacity(n),
      entries: Vec::with_capacity(n),
      dependents: vec![Vec::new(); n],
      level: vec![0; n],
      order: Vec::new(),
      problems: Vec::new(),
    };
    for (i, stage) in workflow.stages.iter().enumerate() {
      let mut deps = Vec::with_capacity(stage.depends_on.len());
      let mut entries = Vec::with_capacity(stage.depends_on.len());
      for (entry, dep) in stage.depends_on.iter().enumerate() {
        let problem = match index.get(dep.as_str()) {
          _ if *dep == stage.id => Some(DagProblem::SelfDependency { stage: i, entry }),
          None => Some(DagProblem::Unknown { stage: i, entry }),
          Some(d) if deps.contains(d) => Some(DagProblem::Duplicate { stage: i, entry }),
          Some(&d) => {
            deps.push(d);
            entries.push(entry);
            dag.dependents[d].push(i);
            None
          }
        };
        dag.problems.extend(problem);
      }
      dag.deps.push(deps);
      dag.entries.push(entries);
    }
    let mut graph = DiGraph::<usize, ()>::with_capacity(n, n);
    let nodes: Vec<_> = (0..n).map(|i| graph.add_node(i)).collect();
    for (i, deps) in dag.deps.iter().enumerate() {
      for &d in deps {
        graph.add_edge(nodes[d], nodes[i], ());
      }
    }
    match toposort(&graph, None) {
      Ok(order) => {
        dag.order = order.into_iter().map(|ix| graph[ix]).collect();
        for k in 0..n {
          let i = dag.order[k];
          dag.level[i] = dag.deps[i]
            .iter()
            .map(|&d| dag.level[d] + 1)
            .max()
            .unwrap_or(0);
        }
      }
      Err(_) => {
        dag.order = (0..n).collect();
        dag.find_cycles();
      }
    }
    dag
  }

  /// True when no cycle was found.
  pub fn is_acyclic(&self) -> bool {
    !self
      .problems
      .iter()
      .any(|p| matches!(p, DagProblem::Cycle { .. }))
  }

  /// Records each cycle once, at the `depends_on` entry that closes it.
  fn find_cycles(&mut self) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
      New,
      Open,
      Done,
    }
    let mut marks = vec![Mark::New; self.deps.len()];
    for root in 0..self.deps.len() {
      if marks[root] != Mark::New {
        continue;
      }
      // An explicit stack of (stage, next dependency to visit) so deep graphs cannot overflow.
      let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
      marks[root] = Mark::Open;
      while let Some(&mut (node, ref mut next)) = stack.last_mut() {
        let k = *next;
        let Some(&dep) = self.deps[node].get(k) else {
          marks[node] = Mark::Done;
          stack.pop();
          continue;
        };
        *next += 1;
        match marks[dep] {
          Mark::New => {
            marks[dep] = Mark::Open;
            stack.push((dep, 0));
          }
          Mark::Open => {
            let start = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
            let mut path: Vec<usize> = stack[start..].iter().map(|(n, _)| *n).collect();
            path.push(dep);
            self.problems.push(DagProblem::Cycle {
              stage: node,
              entry: self.entries[node][k],
              path,
            });
          }
          Mark::Done => {}
        }
      }
    }
  }
}

/// Answers "is `a` an ancestor of `b`" over a [`Dag`], reusing its scratch space between
/// questions.
pub(crate) struct Reach<'a> {
  deps: &'a [Vec<usize>],
  seen: Vec<u32>,
  generation: u32,
  stack: Vec<usize>,
}

impl<'a> Reach<'a> {
  /// A walker over `dag`.
  pub(crate) fn new(dag: &'a Dag) -> Self {
    Self {
      deps: &dag.deps,
      seen: vec![0; dag.deps.len()],
      generation: 0,
      stack: Vec::new(),
    }
  }

  /// Whether `b` depends on `a`, directly or through other stages.
  pub(crate) fn is_ancestor(&mut self, a: usize, b: usize) -> bool {
    // Most reads are of a direct dependency; answer those without a walk.
    if self.deps[b].contains(&a) {
      return true;
    }
    self.generation += 1;
    self.stack.clear();
    self.stack.push(b);
    while let Some(n) = self.stack.pop() {
      for &d in &self.deps[n] {
        if d == a {
          return true;
        }
        if self.seen[d] != self.generation {
          self.seen[d] = self.generation;
          self.stack.push(d);
        }
      }
    }
    false
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::compose;

  fn dag(text: &str) -> Dag {
    // The loader rejects graphs with problems, so build the model without checking.
    let workflow = compose::load_unchecked("t.yaml", text).expect("parses");
    Dag::new(&workflow)
  }

  #[test]
  fn levels_dependents_and_order_of_a_diamond() {
    let dag = dag(
      "name: t\nstages:\n  - { id: d, uses: echo, depends_on: [b, c] }\n  - { id: a, uses: echo }\n  - { id: b, uses: echo, depends_on: a }\n  - { id: c, uses: echo, depends_on: a }\n",
    );
    assert_eq!(dag.level, vec![2, 0, 1, 1]);
    assert_eq!(dag.dependents[1], vec![2, 3]);
    assert_eq!(dag.deps[0], vec![2, 3]);
    let position = |i: usize| dag.order.iter().position(|&o| o == i);
    assert!(position(1) < position(2) && position(2) < position(0));
    assert!(dag.problems.is_empty() && dag.is_acyclic());
  }

  #[test]
  fn bad_entries_are_problems_not_edges() {
    let dag = dag(
      "name: t\nstages:\n  - { id: a, uses: echo, depends_on: [a, zz, b, b] }\n  - { id: b, uses: echo }\n",
    );
    assert_eq!(dag.deps[0], vec![1]);
    assert_eq!(dag.entries[0], vec![2]);
    assert_eq!(
      dag.problems,
      vec![
        DagProblem::SelfDependency { stage: 0, entry: 0 },
        DagProblem::Unknown { stage: 0, entry: 1 },
        DagProblem::Duplicate { stage: 0, entry: 3 },
      ]
    );
  }

  #[test]
  fn a_cycle_is_found_at_its_closing_entry() {
    let dag = dag(
      "name: t\nstages:\n  - { id: a, uses: echo, depends_on: b }\n  - { id: b, uses: echo, depends_on: [c, a] }\n  - { id: c, uses: echo }\n",
    );
    assert!(!dag.is_acyclic());
    assert_eq!(
      dag.problems,
      vec![DagProblem::Cycle {
        stage: 1,
        entry: 1,
        path: vec![0, 1, 0]
      }]
    );
  }

  #[test]
  fn reach_follows_transitive_dependencies_only() {
    let dag = dag(
      "name: t\nstages:\n  - { id: a, uses: echo }\n  - { id: b, uses: echo, depends_on: a }\n  - { id: c, uses: echo, depends_on: b }\n  - { id: x, uses: echo }\n",
    );
    let mut reach = Reach::new(&dag);
    assert!(reach.is_ancestor(0, 2));
    assert!(reach.is_ancestor(1, 2));
    assert!(!reach.is_ancestor(3, 2));
    assert!(!reach.is_ancestor(2, 0));
  }
}
