mod alertmanager;
mod alerts;
mod files;
mod manager;
mod templates;
