//! [`LabGuard`]: a lab that is taken down when the guard is dropped, for tests: a failing test
//! leaves nothing behind either.

use std::path::Path;

use crate::{down::leftovers, error::Result, lab::Lab, up::UpOptions};

/// A lab for the length of a scope. On drop it runs `down` and (unless the thread is already
/// panicking) panics if anything of the lab is left.
#[derive(Debug)]
pub struct LabGuard {
    lab: Option<Lab>,
}

impl LabGuard {
    pub fn up(dir: &Path, options: &UpOptions) -> Result<Self> {
        Ok(LabGuard {
            lab: Some(Lab::up(dir, options)?),
        })
    }

    /// Guard a lab made elsewhere (by the `smon-lab` binary, say).
    pub fn adopt(lab: Lab) -> Self {
        LabGuard { lab: Some(lab) }
    }

    /// Take down now, checking that nothing is left; the error says what is.
    pub fn down(mut self) -> std::result::Result<(), String> {
        self.take_down()
    }

    fn take_down(&mut self) -> std::result::Result<(), String> {
        let Some(lab) = self.lab.take() else {
            return Ok(());
        };
        let id = lab.state().id.clone();
        let dir = lab.dir().to_owned();
        let result = Lab::down(&dir).map_err(|e| format!("down: {e}"));
        let left = leftovers(&id);
        match (result, left.is_empty(), dir.exists()) {
            (Err(e), _, _) => Err(e),
            (Ok(_), false, _) => Err(format!("left behind by lab {id}: {}", left.join(", "))),
            (Ok(_), true, true) => Err(format!("{} is still there", dir.display())),
            (Ok(_), true, false) => Ok(()),
        }
    }
}

impl std::ops::Deref for LabGuard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.lab.as_ref().expect("the lab is up until dropped")
    }
}

impl std::ops::DerefMut for LabGuard {
    fn deref_mut(&mut self) -> &mut Lab {
        self.lab.as_mut().expect("the lab is up until dropped")
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(e) = self.take_down()
            && !std::thread::panicking()
        {
            panic!("{e}");
        }
    }
}
