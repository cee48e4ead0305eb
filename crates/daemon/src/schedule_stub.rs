//! TEMPORARY: the `schedules.<name>` config types as the coordinator adds
//! them to oj-config (CONFIG_TABLES.md); deleted when main is merged.
#![allow(dead_code)]

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    pub cron: String,
    pub timezone: String,
    pub job: serde_json::Value,
    pub overlap: ScheduleOverlap,
    pub catch_up: ScheduleCatchUp,
    pub catch_up_within: Duration,
    pub enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleOverlap {
    #[default]
    Skip,
    Allow,
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleCatchUp {
    #[default]
    Latest,
    None,
}
