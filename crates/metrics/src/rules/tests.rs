mod alertmanager;
mod files;
mod manager;
mod templates;
